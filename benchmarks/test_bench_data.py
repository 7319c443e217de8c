"""Phantom generation speed, encode throughput, the encode memory bound, and Table 1's
streaming memory bound at 512 px.

Run: ``pytest benchmarks/ --benchmark-only -k data``. Each benchmark checks its result."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from ltbench.data.phantom import PhantomConfig, generate, write_phantom
from ltbench.testing import make_tiny_vae_prior

N_IMAGES = 1000


def test_data_phantom_generation_speed(benchmark):
    cfg = PhantomConfig(n=N_IMAGES, size=64, seed=0, min_test_positives=0)
    out = benchmark.pedantic(generate, args=(cfg,), rounds=3, iterations=1, warmup_rounds=0)
    assert out.images.shape == (N_IMAGES, 64, 64) and out.images.std() > 10
    benchmark.extra_info.update(images=N_IMAGES, size=64, images_per_s=N_IMAGES / benchmark.stats.stats.mean)


def test_data_phantom_write_speed(benchmark, bench_dir):
    cfg = PhantomConfig(n=N_IMAGES, size=64, seed=0, min_test_positives=0)
    runs = iter(range(100))

    def write():
        return write_phantom(cfg, str(bench_dir / f"w{next(runs)}"), progress=False)

    out = benchmark.pedantic(write, rounds=2, iterations=1)
    assert len(pd.read_csv(os.path.join(out, "labels.csv"))) == N_IMAGES
    benchmark.extra_info.update(images=N_IMAGES, size=64, images_per_s=N_IMAGES / benchmark.stats.stats.mean)


@pytest.fixture(scope="module")
def encode_inputs(bench_dir):
    data = write_phantom(PhantomConfig(n=1024, size=64, seed=0, min_test_positives=0), str(bench_dir / "enc-data"), progress=False)
    df = pd.read_csv(os.path.join(data, "labels.csv"))
    df.head(256).to_csv(os.path.join(data, "labels-256.csv"), index=False)
    # an SD-shaped VAE (x8 downsampling, 4 latent channels), small enough for a 2-core CPU
    prior = make_tiny_vae_prior(str(bench_dir / "enc-prior"), block_out_channels=(16, 32, 64, 64), sample_size=64)
    return data, prior


def test_data_encode_throughput(benchmark, encode_inputs, bench_dir):
    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.presets import open_dataset
    from ltbench.data.store import LatentStore
    from ltbench.prior.encode import EncodeConfig, encode_dataset

    data, prior = encode_inputs
    csv = os.path.join(data, "labels-256.csv")
    ds = open_dataset("phantom", data, csv=csv, image=ImageConfig(size=64, channels=3))
    runs = iter(range(100))

    def run():
        return encode_dataset(ds, csv, prior, str(bench_dir / f"store{next(runs)}"), EncodeConfig(batch_size=32, shard_size=128), progress=False)

    out = benchmark.pedantic(run, rounds=2, iterations=1)
    store = LatentStore(out)
    assert len(store) == 256 and store[0][0].shape == (4, 8, 8)
    benchmark.extra_info.update(images=256, size=64, vae="4-level AutoencoderKL (16,32,64,64)", images_per_s=256 / benchmark.stats.stats.mean)


RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.presets import open_dataset
    from ltbench.prior.encode import EncodeConfig, encode_dataset
    data, csv, prior, out = sys.argv[1:5]
    ds = open_dataset("phantom", data, csv=csv, image=ImageConfig(size=64, channels=3))
    encode_dataset(ds, csv, prior, out, EncodeConfig(batch_size=16, shard_size=64), progress=False)
    print(json.dumps({"rows": len(ds), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def _peak_rss(data, csv, prior, out):
    r = subprocess.run([sys.executable, "-c", RSS_SCRIPT, data, csv, prior, out], capture_output=True, text=True, check=True, timeout=600)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_data_encode_memory_is_bounded_by_the_batch(benchmark, encode_inputs, bench_dir):
    """Peak RSS for N and 4N images differs by < 30% (the store streams to disk)."""
    data, prior = encode_inputs
    runs = iter(range(100))

    def both():
        i = next(runs)
        small = _peak_rss(data, os.path.join(data, "labels-256.csv"), prior, str(bench_dir / f"rss-small{i}"))
        big = _peak_rss(data, os.path.join(data, "labels.csv"), prior, str(bench_dir / f"rss-big{i}"))
        return small, big

    small, big = benchmark.pedantic(both, rounds=1, iterations=1)
    ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
    benchmark.extra_info.update(n_small=small["rows"], n_big=big["rows"], rss_small_mb=round(small["peak_rss_mb"], 1), rss_big_mb=round(big["peak_rss_mb"], 1), rss_ratio=round(ratio, 3))
    assert big["rows"] == 4 * small["rows"] and small["peak_rss_mb"] > 0 and np.isfinite(ratio)
    assert ratio < 1.3, f"peak RSS grew {ratio:.2f}x from N={small['rows']} to 4N"


def test_data_table1_streaming_memory_at_512px(benchmark, bench_dir):
    """Table 1's data, classifier and scoring stages on N and 4N files at 512 px in the
    MIMIC-CXR-LT layout (the paper-rehearsal's shapes): peak RSS within 1.3x, and the growth per
    extra image far below one image's bytes (holding the splits would cost 256 KiB each)."""
    from ltbench.testing import table1_stage_memory

    size, n_small, n_big = 512, 300, 1200
    data = {}
    for name, n in (("small", n_small), ("big", n_big)):
        data[name] = write_phantom(PhantomConfig(n=n, size=64, seed=0, min_test_positives=1), str(bench_dir / f"t1mem-{name}"), progress=False, layout="mimic-cxr-lt", upsample_to=size)
    runs = iter(range(100))

    def both():
        i = next(runs)
        return {name: table1_stage_memory(data[name], str(bench_dir / f"t1mem-out-{name}{i}"), size) for name in ("small", "big")}

    res = benchmark.pedantic(both, rounds=1, iterations=1)
    per_image_kib = (res["big"]["delta_mb"] - res["small"]["delta_mb"]) / (n_big - n_small) * 1024
    ratio = res["big"]["peak_mb"] / res["small"]["peak_mb"]
    benchmark.extra_info.update(size=size, n_small=n_small, n_big=n_big, peak_small_mb=round(res["small"]["peak_mb"], 1), peak_big_mb=round(res["big"]["peak_mb"], 1), peak_ratio=round(ratio, 3), growth_kib_per_extra_image=round(per_image_kib, 2), image_kib=size * size / 1024, stages_big=res["big"]["stages"])
    assert ratio < 1.3, res
    assert per_image_kib < 0.25 * size * size / 1024, res
