"""The latent store: encode with a diffusers VAE, read back, resume, detect corruption."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ltbench.data.csv_dataset import ImageConfig
from ltbench.data.presets import open_dataset
from ltbench.data.store import LatentStore, StoreError, read_manifest
from ltbench.prior.encode import EncodeConfig, encode_dataset
from ltbench.prior.vae import load_vae


def _ds(phantom_dir, **kw):
    return open_dataset("phantom", phantom_dir, image=ImageConfig(size=32, channels=3, **kw))


def _encode(phantom_dir, prior, out, **kw):
    cfg = EncodeConfig(**{"shard_size": 32, "batch_size": 8, "dtype": "float32", **kw})
    return encode_dataset(_ds(phantom_dir), os.path.join(phantom_dir, "labels.csv"), prior, str(out), cfg, progress=False)


def test_round_trip_equals_direct_encoding(phantom_dir, tiny_prior, tmp_path):
    out = _encode(phantom_dir, tiny_prior, tmp_path / "s", latent="mean")
    store = LatentStore(out)
    ds = _ds(phantom_dir)
    vae = load_vae(tiny_prior)
    assert len(store) == len(ds) == 120
    for i in (0, 33, 119):  # random access across shards
        z, y, row = store[i]
        with torch.no_grad():
            ref = vae.encode(ds[i][0][None]).latent_dist.mode()[0] * vae.config.scaling_factor
        torch.testing.assert_close(z, ref, atol=1e-5, rtol=1e-4)
        assert torch.equal(y, ds[i][1]) and row == i
    m = read_manifest(out)
    assert m["complete"] and m["latent_shape"] == [4, 16, 16] and m["identity"]["latent"] == "mean"
    assert m["identity"]["scaling_factor"] == pytest.approx(vae.config.scaling_factor)
    assert m["identity"]["preprocessing"]["size"] == 32 and len(m["identity"]["vae"]["weights_sha256"]) == 64


def test_split_and_float16(phantom_dir, tiny_prior, tmp_path):
    out = _encode(phantom_dir, tiny_prior, tmp_path / "s", dtype="float16")
    test = LatentStore(out, split="test")
    assert 0 < len(test) < 120 and all(test.table["split"][test[i][2]] == "test" for i in range(len(test)))
    assert test[0][0].dtype == torch.float32  # stored fp16, served fp32


def test_sampled_latents_are_seeded(phantom_dir, tiny_prior, tmp_path):
    a = LatentStore(_encode(phantom_dir, tiny_prior, tmp_path / "a"))
    b = LatentStore(_encode(phantom_dir, tiny_prior, tmp_path / "b"))
    c = LatentStore(_encode(phantom_dir, tiny_prior, tmp_path / "c", seed=1))
    assert torch.equal(a[5][0], b[5][0]) and not torch.equal(a[5][0], c[5][0])


def test_resume_after_an_interrupted_encode_gives_the_same_store(phantom_dir, tiny_prior, tmp_path, monkeypatch):
    ref = LatentStore(_encode(phantom_dir, tiny_prior, tmp_path / "ref"))
    import ltbench.data.csv_dataset as cd

    real = cd.CsvImageDataset.__getitem__

    def dies_at_70(self, i):
        if i == 70:
            raise KeyboardInterrupt("killed")
        return real(self, i)

    monkeypatch.setattr(cd.CsvImageDataset, "__getitem__", dies_at_70)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _encode(phantom_dir, tiny_prior, out)
    with pytest.raises(StoreError, match="incomplete .2 of 4 shards"):
        LatentStore(str(out))
    assert sorted(os.listdir(out / "shards")) == ["latents-00000.npy", "latents-00001.npy", "ok-00000.npy", "ok-00001.npy", "sha256-00000.json", "sha256-00001.json"]
    monkeypatch.setattr(cd.CsvImageDataset, "__getitem__", real)
    before = os.path.getmtime(out / "shards" / "latents-00000.npy")
    resumed = LatentStore(_encode(phantom_dir, tiny_prior, out))
    assert os.path.getmtime(out / "shards" / "latents-00000.npy") == before  # finished shards kept
    for i in range(len(ref)):
        assert torch.equal(resumed[i][0], ref[i][0])


def test_resume_after_sigkill(phantom_dir, tiny_prior, tmp_path):
    def cmd(out):
        return [sys.executable, "-m", "ltbench", "encode", "--data", phantom_dir, "--prior", tiny_prior, "--out", str(out), "--size", "32", "--shard-size", "8", "--batch-size", "4", "--quiet"]

    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "shards" / "latents-00001.npy").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=600) == -signal.SIGKILL, "encode finished before it could be killed"
    assert not read_manifest(str(out))["complete"]
    r = subprocess.run(cmd(out), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert subprocess.run(cmd(tmp_path / "ref"), capture_output=True, timeout=600).returncode == 0
    a, b = LatentStore(str(out)), LatentStore(str(tmp_path / "ref"))
    assert len(a) == len(b) == 120
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(120))


def test_mismatched_settings_are_refused(phantom_dir, tiny_prior, tmp_path):
    out = _encode(phantom_dir, tiny_prior, tmp_path / "s")
    with pytest.raises(StoreError, match="different settings.*latent"):
        _encode(phantom_dir, tiny_prior, out, latent="mean")
    cfg = EncodeConfig(shard_size=32, batch_size=8, dtype="float32", latent="mean")
    encode_dataset(_ds(phantom_dir), os.path.join(phantom_dir, "labels.csv"), tiny_prior, out, cfg, overwrite=True, progress=False)
    assert read_manifest(out)["identity"]["latent"] == "mean"


def test_corrupt_store_is_detected(phantom_dir, tiny_prior, tmp_path):
    out = _encode(phantom_dir, tiny_prior, tmp_path / "s")
    shard = os.path.join(out, "shards", "latents-00002.npy")
    with open(shard, "r+b") as f:
        f.truncate(200)
    with pytest.raises(StoreError, match="latents-00002.npy"):
        store = LatentStore(out)
        [store[i] for i in range(len(store))]
    with open(os.path.join(out, "manifest.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(StoreError, match="corrupt"):
        LatentStore(out)
    with pytest.raises(StoreError, match="not a latent store"):
        LatentStore(str(tmp_path))


def test_bit_flipped_and_truncated_shards_are_caught_on_read_and_re_encoded_on_resume(phantom_dir, tiny_prior, tmp_path, caplog):
    """A flipped payload byte keeps the shard's size and header: only a checksum sees it. A
    truncated shard must not survive a rerun of the same encode, which used to report success."""
    import logging

    out = _encode(phantom_dir, tiny_prior, tmp_path / "s")
    ref = LatentStore(out)
    want = [ref[i][0].clone() for i in range(len(ref))]
    m = read_manifest(out)
    assert len(m["shard_sha256"]) == m["n_shards"] == 4
    flipped = os.path.join(out, "shards", "latents-00001.npy")
    with open(flipped, "r+b") as f:
        f.seek(os.path.getsize(flipped) - 7)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x10]))
    truncated = os.path.join(out, "shards", "latents-00003.npy")
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) - 4)
    store = LatentStore(out)
    store[0]  # shard 0 is whole
    with pytest.raises(StoreError, match="latents-00001.npy is corrupt"):
        store[40]
    with caplog.at_level(logging.WARNING, logger="ltbench"):
        _encode(phantom_dir, tiny_prior, out)  # the same command again
    assert "shard 1" in caplog.text and "shard 3" in caplog.text and "shard 0 " not in caplog.text
    again = LatentStore(out)
    assert all(torch.equal(again[i][0], want[i]) for i in range(len(again)))
    assert read_manifest(out)["shard_sha256"] == m["shard_sha256"]


def test_manifest_fields_are_validated(phantom_dir, tiny_prior, tmp_path):
    import json

    out = _encode(phantom_dir, tiny_prior, tmp_path / "s")
    path = os.path.join(out, "manifest.json")
    good = json.load(open(path))
    for key, bad in (("latent_shape", None), ("latent_shape", [4, 8]), ("n", "120"), ("dtype", "int8"), ("shard_sha256", [])):
        with open(path, "w") as f:
            json.dump({**good, key: bad}, f)
        with pytest.raises(StoreError, match=f"manifest.json is corrupt: {key} = "):
            LatentStore(out)
    with open(path, "w") as f:
        json.dump(good, f)
    with pytest.raises(StoreError, match="has no split 'nosuch'.*'train'"):
        LatentStore(out, split="nosuch")


def test_skipped_images_are_left_out_and_reported(phantom_dir, tiny_prior, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    with open(data / "images" / "000004.png", "wb") as f:
        f.write(b"garbage")
    ds = open_dataset("phantom", str(data), image=ImageConfig(size=32, channels=3, on_error="skip"))
    cfg = EncodeConfig(shard_size=32, batch_size=8)
    with pytest.warns(UserWarning, match="000004.png"):
        encode_dataset(ds, str(data / "labels.csv"), tiny_prior, str(tmp_path / "s"), cfg, progress=False)
    store = LatentStore(str(tmp_path / "s"))
    assert len(store) == 119 and 4 not in store.rows
    strict = open_dataset("phantom", str(data), image=ImageConfig(size=32, channels=3))
    with pytest.raises(OSError, match="000004.png"):
        encode_dataset(strict, str(data / "labels.csv"), tiny_prior, str(tmp_path / "t"), cfg, progress=False)


def test_loads_offline_with_clear_errors(tmp_path, phantom_dir):
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "ltbench", "encode", "--data", phantom_dir, "--prior", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert r.returncode == 2 and "no VAE in" in r.stderr and "vae/config.json" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ltbench", "encode", "--data", str(tmp_path / "missing"), "--prior", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_store_works_in_dataloader_workers(phantom_dir, tiny_prior, tmp_path):
    store = LatentStore(_encode(phantom_dir, tiny_prior, tmp_path / "s"))
    loader = torch.utils.data.DataLoader(store, batch_size=16, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    rows = torch.cat([b[2] for b in loader])
    assert sorted(rows.tolist()) == list(range(120))
