"""CXR-Phantom-LT images and masks: determinism, localisation, learnability, disk format."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ltbench.data.classes import HEAD_CLASSES, PAPER_CLASSES
from ltbench.data.phantom import PhantomConfig, bits_to_masks, generate, make_labels, masks_to_bits, render, write_phantom


def _digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            with open(os.path.join(root, f), "rb") as fh:
                h.update(f.encode() + fh.read())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = write_phantom(PhantomConfig(n=40, size=32, seed=7, min_test_positives=0), str(tmp_path / "a"), progress=False)
    b = write_phantom(PhantomConfig(n=40, size=32, seed=7, min_test_positives=0), str(tmp_path / "b"), progress=False)
    c = write_phantom(PhantomConfig(n=40, size=32, seed=8, min_test_positives=0), str(tmp_path / "c"), progress=False)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_sample_does_not_depend_on_its_batch():
    cfg = PhantomConfig(n=50, size=32, min_test_positives=0)
    full = generate(cfg, batch_size=50)
    part = generate(cfg, indices=[7, 3, 41], batch_size=2)
    assert np.array_equal(part.images, full.images[[7, 3, 41]])
    assert np.array_equal(part.masks, full.masks[[7, 3, 41]])


@pytest.mark.parametrize("size", [16, 128, 512])
def test_any_power_of_two_size(size):
    images, masks = render(np.ones((2, 10), np.uint8), [0, 1], 0, PhantomConfig(size=size))
    assert images.shape == (2, size, size) and images.dtype == np.uint8
    assert masks.shape == (2, 10, size, size) and masks[:, :].any(axis=(2, 3)).all()
    assert images.std() > 10  # real structure, not a flat image


def test_bad_sizes_are_rejected():
    for size in (48, 8, 1024):
        with pytest.raises(ValueError, match=r"power of two|must be in \[16, 512\]"):
            PhantomConfig(size=size)


def _toggle(k, base, cfg, idx):
    off, on = base.copy(), base.copy()
    off[:, k], on[:, k] = 0, 1
    a, _ = render(off, idx, cfg.seed, cfg)
    b, m = render(on, idx, cfg.seed, cfg)
    return a.astype(int), b.astype(int), m[:, k]


@pytest.mark.parametrize("k", range(len(PAPER_CLASSES)), ids=PAPER_CLASSES)
def test_finding_changes_pixels_inside_its_mask_only(k):
    cfg = PhantomConfig(n=400, size=64, seed=2, min_test_positives=0)
    labels, _ = make_labels(cfg)
    idx = np.arange(0, 400, 10)
    for base in (np.zeros_like(labels[idx]), labels[idx]):  # alone, and on top of other findings
        a, b, mask = _toggle(k, base, cfg, idx)
        assert mask.any(axis=(1, 2)).all(), "every positive has a non-empty mask"
        changed = np.abs(b - a) >= 3
        near = F.max_pool2d(torch.from_numpy(mask).float()[:, None], 3, 1, 1)[:, 0].numpy() > 0
        assert (changed & ~near).sum() <= 0.01 * changed.sum(), "changes outside the mask"
        assert np.abs(b - a)[mask].mean() >= 3, "the finding is visible inside its mask"
        assert mask.mean() < 0.25, "a finding is local"
    # absent findings have empty masks
    _, m = render(np.zeros((3, 10), np.uint8), [0, 1, 2], 0, cfg)
    assert not m.any()


def test_findings_are_anatomically_placed():
    cfg = PhantomConfig(n=64, size=64, seed=4, min_test_positives=0)
    _, masks = render(np.ones((64, 10), np.uint8), np.arange(64), cfg.seed, cfg)
    ys = np.arange(64)[None, :, None] / 63.0
    xs = np.arange(64)[None, None, :] / 63.0

    def centroid(c):
        m = masks[:, PAPER_CLASSES.index(c)]
        return (m * ys).sum() / m.sum(), (m * np.abs(xs - 0.5)).sum() / m.sum()

    assert centroid("Pleural Effusion")[0] > 0.6  # basal
    assert centroid("Atelectasis")[0] > 0.5  # lung base
    assert centroid("Enlarged Cardiomediastinum")[0] < 0.4 and centroid("Enlarged Cardiomediastinum")[1] < 0.15  # upper, central
    assert centroid("Pneumomediastinum")[1] < 0.15  # along the mediastinum
    assert centroid("Cardiomegaly")[0] > 0.5  # heart sits low
    assert centroid("Pneumothorax")[1] > 0.2  # lateral rim
    assert centroid("Tortuous Aorta")[0] < 0.5  # aortic knob is high
    assert centroid("Fracture")[1] > 0.1 and 0.15 < centroid("Fracture")[0] < 0.75  # on a lateral rib


def test_mask_bits_round_trip():
    m = np.random.default_rng(0).random((3, 10, 8, 8)) > 0.5
    assert np.array_equal(bits_to_masks(masks_to_bits(m)), m)


def test_on_disk_layout(phantom_dir):
    df = pd.read_csv(os.path.join(phantom_dir, "labels.csv"))
    assert list(df.columns) == ["path", "mask_path", "split", *PAPER_CLASSES]
    assert set(df["split"]) == {"train", "val", "test"}
    assert set(np.unique(df[list(PAPER_CLASSES)].to_numpy())) <= {0, 1}
    mem = generate(PhantomConfig(n=120, size=32, seed=3, min_test_positives=0), indices=[0, 5])
    for j, i in enumerate([0, 5]):
        img = np.asarray(Image.open(os.path.join(phantom_dir, df["path"][i])))
        bits = np.asarray(Image.open(os.path.join(phantom_dir, df["mask_path"][i])), dtype=np.uint16)
        assert img.dtype == np.uint8 and np.array_equal(img, mem.images[j])
        assert np.array_equal(bits_to_masks(bits), mem.masks[j])
        assert np.array_equal(df.loc[i, list(PAPER_CLASSES)].to_numpy(np.uint8), mem.labels[j])


def test_killed_write_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    cfg = PhantomConfig(n=30, size=16, seed=1, min_test_positives=0)
    ref = write_phantom(cfg, str(tmp_path / "ref"), progress=False)
    gen = sys.modules["ltbench.data.phantom.generate"]

    real, calls = gen.render, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(gen, "render", dying)
    out = str(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        write_phantom(cfg, out, batch_size=8, progress=False)
    assert not os.path.exists(out) and len(os.listdir(out + ".partial/masks")) == 8
    monkeypatch.setattr(gen, "render", real)
    write_phantom(cfg, out, batch_size=8, progress=False)
    assert _digest(out) == _digest(ref) and not os.path.exists(out + ".partial")


def test_existing_folder_is_not_clobbered(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_phantom(PhantomConfig(n=5, size=16, min_test_positives=0), str(out), progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_a_phantom_of_another_renderer_version_is_not_reused(tmp_path):
    from ltbench.data.phantom.render import RENDERER_VERSION

    cfg = PhantomConfig(n=6, size=16, min_test_positives=0)
    out = write_phantom(cfg, str(tmp_path / "p"), progress=False)
    meta_path = os.path.join(out, "phantom.json")
    meta = json.load(open(meta_path))
    assert meta["renderer"] == RENDERER_VERSION
    meta["renderer"] = RENDERER_VERSION - 1  # as written by an older ltbench
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(FileExistsError, match="renderer"):
        write_phantom(cfg, out, progress=False)
    write_phantom(cfg, out, progress=False, overwrite=True)
    assert json.load(open(meta_path))["renderer"] == RENDERER_VERSION


@pytest.mark.slow
def test_small_cnn_beats_chance_on_every_head_class():
    from sklearn.metrics import average_precision_score

    torch.manual_seed(0)
    d = generate(PhantomConfig(n=3000, size=64, seed=1))
    x = torch.from_numpy(d.images).float()[:, None] / 255.0
    y = torch.from_numpy(d.labels).float()
    train = torch.from_numpy(d.split != "test")

    def block(i, o):
        return [torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.BatchNorm2d(o), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]

    net = torch.nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64), torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xtr, ytr = x[train], y[train]
    for _ in range(6):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            b = perm[i : i + 64]
            loss = F.binary_cross_entropy_with_logits(net(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        p = torch.sigmoid(net(x[~train])).numpy()
    yt = y[~train].numpy()
    for k, c in enumerate(HEAD_CLASSES):
        ap, chance = average_precision_score(yt[:, k], p[:, k]), yt[:, k].mean()
        assert ap > chance + 0.04, f"{c}: AP {ap:.3f} vs chance {chance:.3f}"


def test_cli_writes_phantom(tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "ltbench", "data", "phantom", "--n", "12", "--size", "16", "--seed", "2", "--min-test-positives", "0", "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out / "labels.csv")
    assert len(df) == 12 and (out / df["path"][0]).exists()
    r = subprocess.run([sys.executable, "-m", "ltbench", "data", "phantom", "--size", "48", "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "power of two" in r.stderr and "Traceback" not in r.stderr
