"""CXR-Phantom-LT label model: real co-occurrence, MIMIC-CXR-LT marginals."""

import numpy as np
import pytest

from ltbench.data.classes import PAPER_CLASSES, TARGET_PREVALENCE
from ltbench.data.phantom import PhantomConfig, make_labels, sample_labels
from ltbench.data.phantom.labels import label_patterns


@pytest.fixture(scope="module")
def big():
    return sample_labels(500_000, np.random.default_rng(123))


def test_prevalences_match_mimic_cxr_lt_within_10_percent(big):
    got = big.mean(0)
    for c, p in zip(PAPER_CLASSES, got):
        assert abs(p / TARGET_PREVALENCE[c] - 1) < 0.10, (c, p, TARGET_PREVALENCE[c])


def test_prevalences_are_ordered_like_a_long_tail(big):
    counts = big.sum(0)
    head, tail = counts[:5], counts[5:]
    assert head.min() > tail.max()
    assert counts[PAPER_CLASSES.index("Pneumomediastinum")] < counts[PAPER_CLASSES.index("Tortuous Aorta")] < counts[PAPER_CLASSES.index("Fracture")]


def test_rows_come_from_real_patients(big):
    # Every 8-class pattern drawn is a row that exists in torchxrayvision's CheXpert CSV.
    cols, patterns, _ = label_patterns()
    known = {tuple(p) for p in patterns}
    idx = [PAPER_CLASSES.index(c) for c in cols]
    drawn = {tuple(r) for r in np.unique(big[:, idx], axis=0)}
    assert drawn <= known
    # ...and keep real co-occurrence: effusion and edema go together more than by chance.
    e, pe = big[:, PAPER_CLASSES.index("Edema")], big[:, PAPER_CLASSES.index("Pleural Effusion")]
    assert (e & pe).mean() > 1.3 * e.mean() * pe.mean()
    assert (big.sum(1) == 0).mean() > 0.1  # some patients have no finding


def test_conditional_tail_classes(big):
    ecm, ta = big[:, PAPER_CLASSES.index("Enlarged Cardiomediastinum")], big[:, PAPER_CLASSES.index("Tortuous Aorta")]
    ptx, pm = big[:, PAPER_CLASSES.index("Pneumothorax")], big[:, PAPER_CLASSES.index("Pneumomediastinum")]
    assert ta[ecm == 1].mean() > 2 * ta[ecm == 0].mean()
    assert pm[ptx == 1].mean() > 3 * pm[ptx == 0].mean()


def test_labels_deterministic_by_seed():
    a, sa = make_labels(PhantomConfig(n=2000, seed=5))
    b, sb = make_labels(PhantomConfig(n=2000, seed=5))
    c, _ = make_labels(PhantomConfig(n=2000, seed=6))
    assert np.array_equal(a, b) and np.array_equal(sa, sb)
    assert not np.array_equal(a, c)


def test_split_fractions_and_min_test_positives():
    cfg = PhantomConfig(n=5000, seed=1)
    labels, split = make_labels(cfg)
    frac = {s: (split == s).mean() for s in ("train", "val", "test")}
    assert frac["train"] == pytest.approx(0.7, abs=0.01) and frac["val"] == pytest.approx(0.1, abs=0.01)
    assert (labels[split == "test"].sum(0) >= cfg.min_test_positives).all()
    # enough positives in the sample: positives were moved, labels not edited
    untouched, _ = make_labels(PhantomConfig(n=5000, seed=1, min_test_positives=0))
    assert np.array_equal(labels, untouched)


def test_tiny_sample_switches_labels_on_with_a_warning():
    with pytest.warns(UserWarning, match="Pneumomediastinum"):
        labels, split = make_labels(PhantomConfig(n=200, seed=0))
    assert (labels[split == "test"].sum(0) >= 5).all()
