"""One iterated-learning generation (interaction + imitation) at the default phantom size:
time and peak RSS, measured in a fresh process. ``pytest benchmarks/ --benchmark-only -k method``.

It runs where ``train_il``'s ``device="auto"`` puts it (the GPU when there is one; the fused
backend there is ``fused-cuda``, the reference one the references on the GPU).
``LTBENCH_BENCH_IL_ROWS`` shrinks the training set (the GPU check's CPU mode)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys, tempfile, time, torch
    from torch.utils.data import TensorDataset
    from ltbench import ops
    from ltbench.data.phantom import PhantomConfig, make_labels
    from ltbench.method.il import IL_PRESETS, train_il
    from ltbench.utils.device import resolve_device
    import dataclasses
    torch.set_num_threads(2)
    shape = os.environ.get("LTBENCH_BENCH_IL_SHAPE", "phantom")
    labels, split = make_labels(PhantomConfig())            # the default phantom: 10,000 images
    y = torch.from_numpy(labels[split == "train"]).float()  # its 7,000 training rows
    if shape == "paper":  # RoentGen's 4x64x64 latents, the paper's IL preset (ngf 64, six levels, VGG11)
        y = y[: int(os.environ.get("LTBENCH_BENCH_IL_ROWS", 2048))]
        z = torch.randn(len(y), 4, 64, 64, generator=torch.Generator().manual_seed(0))
        cfg = dataclasses.replace(IL_PRESETS["paper"], generations=2)
    else:
        y = y[: int(os.environ.get("LTBENCH_BENCH_IL_ROWS", 7000))]
        z = torch.randn(len(y), 4, 16, 16, generator=torch.Generator().manual_seed(0))  # phantom-prior latent shape
        cfg = dataclasses.replace(IL_PRESETS["phantom"], generations=2)  # generation 0 = interaction + imitation
    dev = resolve_device("auto")
    t0 = time.time()
    train_il(TensorDataset(z, y, torch.arange(len(y))), None, cfg, tempfile.mkdtemp(), progress=False, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.time() - t0
    print(json.dumps({
        "seconds_two_generations": secs, "rows": len(y), "shape": list(z.shape[1:]), "il": dataclasses.asdict(cfg),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
        "backend": ops.backend(), "ops_backend": ops.backend_for(dev), "device": str(dev),
        "device_name": torch.cuda.get_device_name() if dev.type == "cuda" else None,
        # three epochs over the rows: two interaction phases, one imitation phase (plus the
        # BatchNorm recalibration's forward passes, counted in the time, not the epochs)
        "latent_epochs_per_s": 3 * len(y) / secs,
    }))
    """
)


def _run_script(env: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="il-generation")
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_method_il_generation_time_and_memory(benchmark, backend):
    """Same run, both backends: the end-to-end effect of the fused ops on one generation."""
    from ltbench import ops

    if backend == "fused" and not ops.extension_available():
        pytest.skip("extension not built")
    env = {**os.environ, "LTBENCH_DISABLE_EXTENSION": "1" if backend == "reference" else "0"}
    out = {}

    def run():
        r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, env=env, timeout=600)
        out.update(json.loads(r.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert out["rows"] == min(7000, int(os.environ.get("LTBENCH_BENCH_IL_ROWS", 7000))) and out["seconds_two_generations"] > 0 and out["backend"] == backend
    benchmark.extra_info.update(out, note="two generations (one with imitation, the last without), random latents of the phantom prior's shape")


@pytest.mark.benchmark(group="il-generation-paper-shape")
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_method_il_paper_shape_throughput(benchmark, backend):
    """The paper's IL preset on RoentGen-shaped latents (4x64x64): latent-epochs per second, the
    figure the paper preset's projection assumes for the IL fit. GPU only (hours on 2 cores),
    unless LTBENCH_BENCH_IL_PAPER=1."""
    import torch

    from ltbench import ops

    if not torch.cuda.is_available() and os.environ.get("LTBENCH_BENCH_IL_PAPER") != "1":
        pytest.skip("paper-shape IL is measured on a GPU")
    if backend == "fused" and not ops.extension_available():
        pytest.skip("extension not built")
    env = {**os.environ, "LTBENCH_DISABLE_EXTENSION": "1" if backend == "reference" else "0", "LTBENCH_BENCH_IL_SHAPE": "paper"}
    out = {}
    benchmark.pedantic(lambda: out.update(_run_script(env)), rounds=1, iterations=1)
    assert out["backend"] == backend and out["shape"] == [4, 64, 64]
    benchmark.extra_info.update(out, note="two generations of IL_PRESETS['paper'] on random 4x64x64 latents (RoentGen's latent shape)")
