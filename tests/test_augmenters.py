"""One contract, every registered augmenter (imbalanced-learn style common tests)."""

import numpy as np
import pytest
import torch

from ltbench.augment import AUGMENTERS, _load_plugins, make_augmenter
from ltbench.data.classes import HEAD_CLASSES, PAPER_CLASSES, TAIL_CLASSES
from ltbench.method.fusion import FusionConfig
from ltbench.method.il import ILConfig

_load_plugins()
N_PER = 3


@pytest.fixture(scope="module")
def prior():
    from ltbench.prior.pipeline import load_prior

    return load_prior("phantom")


@pytest.fixture(scope="module")
def data(prior):
    from ltbench.data.phantom import PhantomConfig, make_labels

    labels, _ = make_labels(PhantomConfig(n=400, seed=3))
    X = torch.randn(len(labels), *prior.latent_shape, generator=torch.Generator().manual_seed(0))  # latents of the shipped prior
    return X, labels.astype(np.uint8)


def _make(name, prior, tmp_path):
    kw = dict(classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES)
    if name == "fsa-il":
        return make_augmenter(name, **kw, il=ILConfig(generations=1, ngf=8, batch_size=128, max_depth=2), fusion=FusionConfig(n_per_class=N_PER), work_dir=str(tmp_path))
    if name == "t2i":
        return make_augmenter(name, **kw, prior=prior, n_per_class=N_PER, steps=3)
    return make_augmenter(name, **kw, n_per_class=N_PER)


def test_registry_has_every_table1_row():
    assert {"none", "oversample", "smote", "t2i", "fsa-il"} <= set(AUGMENTERS)


@pytest.mark.parametrize("name", sorted(AUGMENTERS))
def test_common_contract(name, data, prior, tmp_path):
    X, y = data
    aug = _make(name, prior, tmp_path / "a")
    X_res, y_res = aug.fit_resample(X, y)
    assert torch.equal(X_res[: len(X)], X) and np.array_equal(y_res[: len(X)], y)
    new_x, new_y = X_res[len(X) :], y_res[len(X) :]
    assert new_x.shape[1:] == X.shape[1:] and torch.isfinite(new_x).all()
    assert new_y.dtype == np.uint8 and set(np.unique(new_y)) <= {0, 1}
    expected = 0 if name == "none" else N_PER * len(TAIL_CLASSES)
    assert len(new_x) == len(new_y) == expected
    for c in TAIL_CLASSES if expected else ():
        assert new_y[:, PAPER_CLASSES.index(c)].sum() >= N_PER  # every tail class got its samples
    again = _make(name, prior, tmp_path / "b").fit_resample(X, y)  # same seed, same output
    assert torch.equal(again[0], X_res) and np.array_equal(again[1], y_res)


def test_smote_interpolates_between_tail_examples():
    rng = np.random.default_rng(0)
    X = torch.from_numpy(np.concatenate([rng.random((20, 1, 2, 2)), 10 + rng.random((80, 1, 2, 2))])).float()
    y = np.zeros((100, 10), np.uint8)
    y[:20, PAPER_CLASSES.index("Fracture")] = 1
    aug = make_augmenter("smote", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=["Fracture"], n_per_class=50)
    new, lab = aug.fit_generate(X, y)
    # toward a tail neighbour: inside the tail examples' box, never pushed away from it
    assert len(new) == 50 and (new >= X[:20].amin(0) - 1e-6).all() and (new <= X[:20].amax(0) + 1e-6).all()
    assert (lab[:, PAPER_CLASSES.index("Fracture")] == 1).all() and lab.sum() == 50


def test_oversample_copies_tail_examples(data):
    X, y = data
    new, lab = make_augmenter("oversample", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=["Pneumothorax"], n_per_class=10).fit_generate(X, y)
    k = PAPER_CLASSES.index("Pneumothorax")
    assert (lab[:, k] == 1).all()
    assert all(any(torch.equal(row, X[i]) for i in np.flatnonzero(y[:, k])) for row in new)


def test_t2i_needs_a_matching_prior(data, prior):
    X, y = data
    with pytest.raises(ValueError, match="needs a prior"):
        make_augmenter("t2i", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES).fit_generate(X, y)
    with pytest.raises(ValueError, match="latents of the prior"):
        make_augmenter("t2i", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES, prior=prior).fit_generate(torch.zeros(4, 3, 8, 8), y[:4])
