"""Paired bootstrap intervals (the refinement sweep's) and the feature-level FID they use."""

import numpy as np
import pytest
import torch

from ltbench.eval.bootstrap import _real_stats, fid_gram, paired_bootstrap
from ltbench.eval.fid import ORACLE_EXTRACTOR, distribution_metrics, features, fid_from_features

CLASSES = ("a", "b", "c")


@pytest.fixture(scope="module")
def oracle_file():
    import os

    from ltbench.eval.oracle import SHIPPED, WEIGHTS

    return os.path.join(SHIPPED, WEIGHTS)


@pytest.mark.parametrize("m", [20, 64, 150])
def test_gram_fid_is_torch_fidelitys(m):
    """The bootstrap's m x m form of the Frechet distance equals torch-fidelity's D x D one,
    with fewer samples than dimensions (rank-deficient covariance) and with more."""
    rng = np.random.default_rng(m)
    real = rng.normal(size=(120, 96)) * rng.random(96)
    fake = rng.normal(size=(m, 96)) * rng.random(96) + 0.2
    ref = fid_from_features(torch.from_numpy(real), torch.from_numpy(fake))
    assert ref > 1.0
    assert fid_gram(fake, _real_stats(real)) == pytest.approx(ref, rel=1e-6)  # torch-fidelity square-roots ~1e-16 eigenvalues of the rank-deficient product: ~1e-8 noise


def test_features_are_the_ones_torch_fidelity_measures(oracle_file):
    """FID from ``features`` equals ``distribution_metrics``'s (one calculate_metrics call)."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, size=(40, 64, 64), dtype=np.uint8)
    fake = np.clip(real.astype(int)[:30] + rng.integers(-60, 60, size=(30, 64, 64)), 0, 255).astype(np.uint8)
    fr, ff = features(real, ORACLE_EXTRACTOR, oracle_file), features(fake, ORACLE_EXTRACTOR, oracle_file)
    assert fr.shape[0] == 40 and ff.shape[0] == 30 and fr.dtype == torch.float64
    assert fid_from_features(fr, ff) == pytest.approx(distribution_metrics(real, fake, ORACLE_EXTRACTOR, oracle_file)["fid"], rel=1e-6)
    with pytest.raises(ValueError, match="empty"):
        features(real[:0], ORACLE_EXTRACTOR, oracle_file)


def _points(rng, m=64, shift=0.0):
    real = {c: rng.normal(size=(100, 8)) for c in CLASSES}
    a = {c: rng.normal(size=(m, 8)) for c in CLASSES}
    return real, a, {c: v + shift for c, v in a.items()}


def test_identical_points_give_a_zero_interval_and_a_shift_a_resolved_one():
    rng = np.random.default_rng(1)
    real, a, b = _points(rng, shift=0.5)
    calls = {c: rng.random(64) < 0.5 for c in CLASSES}
    fake = {"a": a, "a2": {c: v.copy() for c, v in a.items()}, "b": b}
    positive = {"a": calls, "a2": calls, "b": {c: np.ones(64, bool) for c in CLASSES}}
    res = paired_bootstrap(real, fake, positive, {"same": [(1, "a2"), (-1, "a")], "shift": [(1, "b"), (-1, "a")]}, n_boot=200)
    same = res["contrasts"]["same"]
    assert same["fid"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    assert same["label_fidelity"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    shift = res["contrasts"]["shift"]["fid"]
    direct = np.mean([fid_from_features(torch.from_numpy(real[c]), torch.from_numpy(b[c])) - fid_from_features(torch.from_numpy(real[c]), torch.from_numpy(a[c])) for c in CLASSES])
    assert shift["estimate"] == pytest.approx(direct, rel=1e-9)
    assert shift["low"] > 0.5 * direct > 0  # shifting every sample by 0.5 in 8 dimensions adds ~2 to FID
    assert shift["low"] <= shift["estimate"] <= shift["high"]
    lf = res["contrasts"]["shift"]["label_fidelity"]
    assert lf["estimate"] == pytest.approx(1 - np.mean([calls[c].mean() for c in CLASSES]))
    assert res["points"]["b"]["label_fidelity"] == 1.0


def test_resampling_is_paired_across_points():
    """b is a with three positive calls per class turned negative: every paired replicate
    loses label fidelity, so the interval's top is <= 0; resampling the points independently
    would put it well above 0."""
    rng = np.random.default_rng(2)
    real, a, _ = _points(rng)
    calls_a = {c: rng.random(64) < 0.5 for c in CLASSES}
    calls_b = {}
    for c, v in calls_a.items():
        w = v.copy()
        w[np.flatnonzero(v)[:3]] = False
        calls_b[c] = w
    res = paired_bootstrap(real, {"a": a, "b": a}, {"a": calls_a, "b": calls_b}, {"b-a": [(1, "b"), (-1, "a")]}, n_boot=300)
    lf = res["contrasts"]["b-a"]["label_fidelity"]
    assert lf["estimate"] == pytest.approx(-3 / 64)
    assert lf["high"] <= 0.0 and lf["low"] < 0.0


def test_bootstrap_rejects_unpaired_or_unknown_points():
    rng = np.random.default_rng(3)
    real, a, b = _points(rng)
    calls = {c: np.ones(64, bool) for c in CLASSES}
    short = {c: v[:60] for c, v in b.items()}
    with pytest.raises(ValueError, match="different sample counts"):
        paired_bootstrap(real, {"a": a, "b": short}, {"a": calls, "b": {c: v[:60] for c, v in calls.items()}}, {"d": [(1, "b"), (-1, "a")]}, n_boot=10)
    with pytest.raises(ValueError, match="unknown point 'z'"):
        paired_bootstrap(real, {"a": a}, {"a": calls}, {"d": [(1, "z")]}, n_boot=10)
    with pytest.raises(ValueError, match="every class"):
        paired_bootstrap(real, {"a": {"a": a["a"]}}, {"a": {"a": calls["a"]}}, {}, n_boot=10)
