"""One contract, every registered augmenter (imbalanced-learn style common tests)."""

import numpy as np
import pytest
import torch

from ltbench.augment import AUGMENTERS, load_all, make_augmenter
from ltbench.data.classes import HEAD_CLASSES, PAPER_CLASSES, TAIL_CLASSES
from ltbench.method.fusion import FusionConfig
from ltbench.method.il import ILConfig

load_all()
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


def test_plugins_register_through_entry_points_one_way(tmp_path, monkeypatch):
    """A user's augmenter registers through the `ltbench.augmenters` entry-point group, exactly
    as the baselines do; ltbench.augment never imports a plug-in package by name."""
    import subprocess
    import sys
    from importlib.metadata import EntryPoint

    import ltbench.augment as A

    code = "import sys, ltbench.augment as A; assert 'baselines' not in sys.modules; A.make_augmenter('smote', classes=['a'], head=[], tail=['a']); assert 'baselines.smote' in sys.modules and 'baselines.t2i' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)

    (tmp_path / "my_aug.py").write_text(
        "import numpy as np, torch\n"
        "from ltbench.augment import Augmenter\n"
        "class Mine(Augmenter):\n"
        "    name = 'mine'\n"
        "    def __init__(self, classes, head, tail, n_per_class=2, seed=0, **_):\n"
        "        self.n = n_per_class\n"
        "    def _generate(self, X, y):\n"
        "        return X[: self.n] * 0, y[: self.n]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = {**A._entry_points(), "mine": EntryPoint("mine", "my_aug:Mine", A.ENTRY_POINT_GROUP)}
    monkeypatch.setattr(A, "_entry_points", lambda: eps)
    monkeypatch.delitem(A.AUGMENTERS, "mine", raising=False)
    assert "mine" in A.augmenter_names() and "mine" not in A.AUGMENTERS  # listed without importing
    X, y = torch.randn(5, 4, 2, 2), np.eye(5, 3, dtype=np.uint8)
    new, lab = A.make_augmenter("mine", classes=list("abc"), head=["a"], tail=["b"], n_per_class=2).fit_generate(X, y)
    assert new.shape == (2, 4, 2, 2) and (new == 0).all() and lab.shape == (2, 3)
    assert A.AUGMENTERS["mine"].__module__ == "my_aug"
    bad = {**eps, "wrong": EntryPoint("wrong", "my_aug:Mine", A.ENTRY_POINT_GROUP)}
    monkeypatch.setattr(A, "_entry_points", lambda: bad)
    with pytest.raises(ValueError, match="whose `name` is 'mine'"):
        A.make_augmenter("wrong")
    A.AUGMENTERS.pop("mine", None)
