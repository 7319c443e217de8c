"""One iterated-learning generation (interaction + imitation) at the default phantom size:
time and peak RSS, measured in a fresh process. ``pytest benchmarks/ --benchmark-only -k method``."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, tempfile, time, torch
    from torch.utils.data import TensorDataset
    from ltbench import ops
    from ltbench.data.phantom import PhantomConfig, make_labels
    from ltbench.method.il import IL_PRESETS, train_il
    import dataclasses
    torch.set_num_threads(2)
    labels, split = make_labels(PhantomConfig())            # the default phantom: 10,000 images
    y = torch.from_numpy(labels[split == "train"]).float()   # its 7,000 training rows
    z = torch.randn(len(y), 4, 16, 16, generator=torch.Generator().manual_seed(0))  # phantom-prior latent shape
    cfg = dataclasses.replace(IL_PRESETS["phantom"], generations=2)  # generation 0 = interaction + imitation
    t0 = time.time()
    train_il(TensorDataset(z, y, torch.arange(len(y))), None, cfg, tempfile.mkdtemp(), progress=False)
    print(json.dumps({"seconds_two_generations": time.time() - t0, "rows": len(y), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "backend": ops.backend()}))
    """
)


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
    assert out["rows"] == 7000 and out["seconds_two_generations"] > 0 and out["backend"] == backend
    benchmark.extra_info.update(out, note="two generations (one with imitation, the last without), random latents of the phantom prior's shape")
