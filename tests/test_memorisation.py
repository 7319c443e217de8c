"""Memorisation (``ltbench.eval.memorisation``): nearest-train distances by hand on constant
images, an exact copy flagged and held-out-like images passing, chunking and row sources
giving the one-block answer, and the input errors."""

import math

import numpy as np
import pytest
import torch

from ltbench.eval.memorisation import memorisation, nearest_train

TRAIN_LEVELS = [0, 50, 100, 150, 200, 250]
HELDOUT_LEVELS = [20, 71, 125, 172, 226, 27]  # nearest train levels 0, 50, 100|150, 150, 250, 50: gaps 20, 21, 25, 22, 24, 23
FRESH_LEVELS = [22, 73, 127, 178, 228, 24]  # new images, about as far from train (gaps 22-24)
COPIED_ROWS = [2, 4, 1, 2, 5, 0]


def _constant(levels, size=4):
    return np.stack([np.full((size, size), v, np.uint8) for v in levels])


def _mean(images):
    """A one-number feature: the mean intensity on [0, 1]."""
    return torch.as_tensor(images).float().mean((1, 2), keepdim=False)[:, None] / 255


def _percentile5(v):
    """numpy's default (linear) 5th percentile, written out: position 0.05 (n - 1)."""
    v = sorted(v)
    pos = 0.05 * (len(v) - 1)
    lo = int(pos)
    return v[lo] + (pos - lo) * (v[lo + 1] - v[lo])


def test_nearest_train_distances_by_hand():
    """Constant 4x4 images at levels a, b: L2 on [0, 1] is sqrt(16) |a - b| / 255 in pixels,
    |a - b| / 255 for the mean-intensity feature; an exact copy is at exactly 0."""
    train = _constant(TRAIN_LEVELS)
    d = nearest_train([train[COPIED_ROWS], _constant(HELDOUT_LEVELS)], train, features=_mean)
    gaps = [min(abs(h - t) for t in TRAIN_LEVELS) for h in HELDOUT_LEVELS]
    assert np.array_equal(d["pixel"][:6], np.zeros(6)) and list(d["pixel_index"][:6]) == COPIED_ROWS
    assert d["pixel"][6:] == pytest.approx([4 * g / 255 for g in gaps], rel=1e-6)
    assert d["feature"][6:] == pytest.approx([g / 255 for g in gaps], rel=1e-5)
    assert list(d["pixel_index"][6:8]) == [0, 1] and list(d["feature_index"][9:10]) == [3]
    assert (d["feature"][:6] < 1e-7).all()


def test_exact_copies_are_flagged_and_new_images_pass():
    train = _constant(TRAIN_LEVELS)
    generated = {"copied": train[COPIED_ROWS], "fresh": _constant(FRESH_LEVELS)}
    heldout = {"copied": _constant(HELDOUT_LEVELS), "fresh": _constant(HELDOUT_LEVELS)}
    out = memorisation(generated, heldout, train, features=_mean)
    gaps = [4 * min(abs(h - t) for t in TRAIN_LEVELS) / 255 for h in HELDOUT_LEVELS]
    copied, fresh = out["per_class"]["copied"], out["per_class"]["fresh"]
    px = copied["pixel"]
    assert px["generated_median"] == 0.0 and px["heldout_median"] == pytest.approx(np.median(gaps), rel=1e-6)
    assert px["near_copy_threshold"] == pytest.approx(_percentile5(gaps), rel=1e-6)
    assert px["near_copy_share"] == 1.0 and px["p_closer"] == 1.0 and px["heldout_near_copy_share"] == pytest.approx(1 / 6)  # gap 20 < 20.25
    # every copy below every held-out image: U = 0 of m n = 36; the six copies tie at 0, so the
    # U test is the normal one with the tie-corrected variance and the continuity correction
    m = n = 6
    var = m * n / 12 * ((m + n + 1) - (6**3 - 6) / ((m + n) * (m + n - 1)))
    p = 0.5 * math.erfc(-((0 - m * n / 2 + 0.5) / math.sqrt(var)) / math.sqrt(2))
    assert px["p_value"] == pytest.approx(p, rel=1e-9)
    # Holm over 2 classes x 2 spaces: the two smallest (the copies' pixel and feature tests,
    # equal) are multiplied by 4, then the running maximum keeps 4 p
    assert px["p_holm"] == pytest.approx(4 * p, rel=1e-9) and px["flag"] is True
    assert copied["feature"]["flag"] is True and copied["flag"] is True and copied["heldout_in_train"] == 0
    assert fresh["flag"] is False and fresh["pixel"]["near_copy_share"] == 0.0
    assert 0.3 < fresh["pixel"]["p_closer"] < 0.7  # as close to train as held-out images are
    assert out["overall"]["flag"] is True and out["overall"]["flagged_classes"] == ["copied"]
    assert out["overall"]["pixel"]["near_copy_share"] == 0.5  # 6 of 12 generated images
    assert out["overall"]["n_generated"] == 12 and out["overall"]["n_heldout"] == 12
    # a row made of held-out-like images only is not flagged
    assert memorisation({"fresh": generated["fresh"]}, heldout, train)["overall"]["flag"] is False


def test_too_few_heldout_images_leave_a_class_untested():
    train = _constant(TRAIN_LEVELS)
    out = memorisation({"a": train[:3], "b": train[:0]}, {"a": _constant(HELDOUT_LEVELS[:3]), "b": train[:0]}, train)
    assert out["per_class"]["a"]["flag"] is None and out["per_class"]["a"]["pixel"]["p_value"] is None
    assert out["per_class"]["a"]["pixel"]["generated_median"] == 0.0
    assert out["per_class"]["b"] is None and out["overall"]["flag"] is None
    # a class with samples and NO held-out image (a small real split): measured, not tested
    out = memorisation({"a": train[:3]}, {"a": train[:0]}, train, features=_mean)
    assert out["per_class"]["a"]["n_heldout"] == 0 and out["per_class"]["a"]["pixel"]["generated_median"] == 0.0
    assert out["per_class"]["a"]["pixel"]["heldout_median"] is None and out["per_class"]["a"]["flag"] is None


def test_chunks_and_row_sources_give_the_one_block_answer(tmp_path):
    from ltbench.data.rows import RowFile

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (37, 6, 6), dtype=np.uint8)
    queries = [rng.integers(0, 256, (11, 6, 6), dtype=np.uint8), train[[3, 36]], rng.integers(0, 256, (5, 1, 6, 6), dtype=np.uint8)]
    proj = torch.from_numpy(rng.normal(size=(36, 4))).float()
    feat = lambda x: (torch.as_tensor(x).reshape(len(x), -1).float() / 255) @ proj  # noqa: E731
    one = nearest_train(queries, train, feat, chunk_size=1000, query_chunk=1000)
    np.save(tmp_path / "train.npy", train)
    for source in (train, torch.from_numpy(train), RowFile(str(tmp_path / "train.npy"))):
        many = nearest_train(queries, source, feat, chunk_size=5, query_chunk=3)
        for s in ("pixel", "feature"):
            assert np.array_equal(many[f"{s}_index"], one[f"{s}_index"]), s
        assert np.allclose(many["pixel"], one["pixel"], rtol=1e-12, atol=0)
        assert np.allclose(many["feature"], one["feature"], rtol=1e-5, atol=1e-7)
    # the train features computed once beforehand give the same answer as computing them per chunk
    pre = nearest_train(queries, train, feat, chunk_size=5, query_chunk=3, train_features=feat(train))
    assert np.array_equal(pre["feature_index"], one["feature_index"]) and np.allclose(pre["feature"], one["feature"], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="one row per train image"):
        nearest_train(queries, train, feat, train_features=feat(train)[:5])
    # brute force in float64
    q = np.concatenate([x.reshape(len(x), -1) for x in queries]).astype(np.float64) / 255
    t = train.reshape(len(train), -1).astype(np.float64) / 255
    full = np.sqrt(((q[:, None] - t[None]) ** 2).sum(-1))
    assert np.array_equal(one["pixel_index"], full.argmin(1))
    assert np.allclose(one["pixel"], full.min(1), rtol=1e-6, atol=0)
    assert one["pixel"][11] == 0.0 and one["pixel_index"][12] == 36


def test_memorisation_rejects_bad_input():
    train = _constant(TRAIN_LEVELS)
    with pytest.raises(ValueError, match="uint8"):
        nearest_train(train.astype(np.float32), train)
    with pytest.raises(ValueError, match="8x8 px but the train images are 4x4"):
        nearest_train(_constant([1, 2], size=8), train)
    with pytest.raises(ValueError, match=r"no held-out images given for \['b'\]"):
        memorisation({"a": train, "b": train}, {"a": train}, train)
    with pytest.raises(ValueError, match="features must map"):
        nearest_train(train, train, features=lambda x: torch.zeros(len(x)))
