"""Memory is bounded by the batch, not the dataset: encoding 4x the images must not raise the
peak RSS by more than a small fraction of what holding the extra images would cost. (The same
check at benchmark scale is `benchmarks/test_bench_data.py`; this one runs in CI.)"""

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

pytestmark = [pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc peak-RSS reset"), pytest.mark.slow]  # peak-RSS probes in fresh processes

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.presets import open_dataset
    from ltbench.prior.encode import EncodeConfig, encode_dataset

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))

    data, csv, prior, out, size = sys.argv[1:6]
    ds = open_dataset("phantom", data, csv=csv, image=ImageConfig(size=int(size), channels=3))
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    encode_dataset(ds, csv, prior, out, EncodeConfig(batch_size=16, shard_size=64), progress=False)
    print(json.dumps({"rows": len(ds), "delta_mb": status("VmHWM") - base}))
    """
)


def test_encode_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    from ltbench.data.phantom import PhantomConfig, write_phantom
    from ltbench.testing import make_tiny_vae_prior

    size, n_small, n_big = 128, 128, 512
    data = write_phantom(PhantomConfig(n=n_big, size=size, seed=0, min_test_positives=0), str(tmp_path / "data"), progress=False)
    pd.read_csv(os.path.join(data, "labels.csv")).head(n_small).to_csv(os.path.join(data, "small.csv"), index=False)
    prior = make_tiny_vae_prior(str(tmp_path / "prior"), block_out_channels=(16, 32, 64, 64), sample_size=size)
    res = {}
    for name, csv in (("small", "small.csv"), ("big", "labels.csv")):
        # large blocks straight from mmap, so freed memory leaves the process: glibc's heap
        # otherwise keeps fragments and the peak wanders by +-40 KiB per image between runs
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        r = subprocess.run([sys.executable, "-c", SCRIPT, data, os.path.join(data, csv), prior, str(tmp_path / f"store-{name}"), str(size)], capture_output=True, text=True, check=True, env=env, timeout=600)
        res[name] = json.loads(r.stdout.strip().splitlines()[-1])
    assert (res["small"]["rows"], res["big"]["rows"]) == (n_small, n_big)
    image_mb = size * size * 3 * 4 / 2**20  # one decoded float image
    per_image = (res["big"]["delta_mb"] - res["small"]["delta_mb"]) / (n_big - n_small)
    # holding the images (or their tensors) would cost >= image_mb per extra image
    assert per_image < 0.25 * image_mb, f"peak RSS grew {per_image * 1024:.0f} KiB per extra image ({res})"


def test_table1_stages_stream_the_dataset(tmp_path):
    """The data stage (files -> per-split image files, through DataLoader workers), the
    classifier's warm start and row (batches read from disk) and the test split's scoring
    (in batches) on N and 4N images: the peak RSS may not grow by a fraction of what holding
    the images would cost (measured: 0.2 KiB per extra image; with the splits held in memory 16 KiB, one
    uint8 image), and the 4N run's peak is within 1.3x of the N run's (the issue's bound)."""
    from ltbench.data.phantom import PhantomConfig, write_phantom
    from ltbench.testing import table1_stage_memory

    size, n_small, n_big = 128, 500, 2000
    res = {}
    for name, n in (("small", n_small), ("big", n_big)):
        data = write_phantom(PhantomConfig(n=n, size=size, seed=0, min_test_positives=1), str(tmp_path / f"data-{name}"), progress=False)
        res[name] = table1_stage_memory(data, str(tmp_path / f"out-{name}"), size)
    image_mb = size * size / 2**20  # one image held as uint8
    per_image = (res["big"]["delta_mb"] - res["small"]["delta_mb"]) / (n_big - n_small)
    assert per_image < 0.25 * image_mb, f"peak RSS grew {per_image * 1024:.1f} KiB per extra image ({res})"
    assert res["big"]["peak_mb"] <= 1.3 * res["small"]["peak_mb"], res
