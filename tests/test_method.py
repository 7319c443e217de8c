"""The method (fsa-il): iterated learning, class activation maps, partner choice, fusion, the augmenter."""

import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from ltbench.augment import AUGMENTERS, make_augmenter
from ltbench.data.classes import HEAD_CLASSES, PAPER_CLASSES, TAIL_CLASSES
from ltbench.method.fusion import FusionConfig, choose_partners, knn_rows
from ltbench.method.il import ILConfig, load_il, train_il

FAST_IL = ILConfig(generations=3, ngf=16, batch_size=64, lr=2e-3, classifier="small", max_depth=3)


def _ds(z, y):
    return TensorDataset(z, torch.from_numpy(y).float(), torch.arange(len(z)))


def test_short_il_run_learns(latents, tmp_path):
    z, y, _ = latents
    train, val = _ds(z[:750], y[:750]), _ds(z[750:], y[750:])
    train_il(train, val, FAST_IL, str(tmp_path), progress=False)
    lines = [json.loads(s) for s in open(tmp_path / "log.jsonl")]
    assert [e["generation"] for e in lines] == [0, 1, 2]
    first, last = lines[0], lines[-1]
    assert last["interaction"]["recon"] < first["interaction"]["recon"]
    assert last["interaction"]["cls"] < first["interaction"]["cls"]
    assert "imitation" in first and "imitation" not in last  # no imitation after the last generation
    chance = float(np.mean([y[750:, k].mean() for k in range(10) if y[750:, k].sum()]))
    assert last["val"]["mAP"] > chance + 0.05, (last["val"], chance)
    model = load_il(str(tmp_path))
    assert model.sparse(z[:2]).shape == (2, 64, 16, 16)


def test_il_resumes_after_a_kill_to_the_same_weights(latents, tmp_path, monkeypatch):
    import ltbench.method.il as il

    z, y, _ = latents
    cfg = ILConfig(generations=3, ngf=8, batch_size=128, max_depth=2)
    train = _ds(z[:300], y[:300])
    ref = train_il(train, None, cfg, str(tmp_path / "ref"), progress=False)
    real, calls = il.ops.imitation_bce, []

    def dies(*a):
        calls.append(1)
        if len(calls) == 4:  # inside generation 1's imitation phase
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(il.ops, "imitation_bce", dies)
    with pytest.raises(KeyboardInterrupt):
        train_il(train, None, cfg, str(tmp_path / "run"), progress=False)
    monkeypatch.setattr(il.ops, "imitation_bce", real)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["gen-000.pt"]
    resumed = train_il(train, None, cfg, str(tmp_path / "run"), progress=False)
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert len(open(tmp_path / "run" / "log.jsonl").readlines()) == 3


def test_decoder_output_is_unbounded():
    from ltbench.method.il import ILModel

    model = ILModel((4, 16, 16), 10, ILConfig(ngf=8, max_depth=2))
    with torch.no_grad():
        for p in model.decoder.out.parameters():
            p.fill_(1.0)
        out = model.decoder(model.sparse(torch.randn(2, 4, 16, 16)))
    assert out.abs().max() > 1.5  # a tanh would cap it at 1


# ---- partner choice ------------------------------------------------------------------------


def _partner_world():
    """10 examples, classes [h0, h1, h2, t]. Head-class rows are NOT a prefix of the data and
    tail rows are not 0..T-1, so positional indexing bugs land on the wrong rows."""
    labels = np.zeros((10, 4), np.uint8)
    labels[[7, 9], 3] = 1  # tail examples at rows 7 and 9
    labels[[1, 4, 6], 2] = 1  # head class 2
    labels[[0, 2], 0] = 1
    labels[[3, 5, 8], 1] = 1
    cams = np.zeros((10, 2, 2), np.float32)
    for r in range(10):
        cams[r] = r / 10.0  # CAM distance = |row difference| / 10
    scores = np.zeros((10, 4), np.float32)
    scores[:, 2] = 0.9  # every tail example most confused with head class 2
    return labels, cams, scores


def test_paper_rule_partners_come_from_the_most_confused_head_class():
    labels, cams, scores = _partner_world()
    partners, hclass = choose_partners(np.array([7, 9]), labels, cams, scores, [0, 1, 2], "paper", 1, np.random.default_rng(0))
    assert hclass.tolist() == [2, 2]
    # exact nearest in CAM space among class-2 rows {1, 4, 6}: row 6 for both tails
    assert partners.tolist() == [6, 6]
    # the authors' bugs would give: CAM of tail *list position* (rows 0, 1) and a head
    # *subset position* used as a global row (positions 0..2 -> rows 0..2, not class 2)
    assert all(labels[p, 2] == 1 for p in partners)


def test_paper_rule_knn_draws_among_the_k_nearest():
    labels, cams, scores = _partner_world()
    seen = set()
    for s in range(30):
        p, _ = choose_partners(np.array([7]), labels, cams, scores, [0, 1, 2], "paper", 2, np.random.default_rng(s))
        seen.add(int(p[0]))
    assert seen == {4, 6}


def test_code_rule_searches_all_head_examples_with_global_indices():
    labels, cams, scores = _partner_world()
    partners, hclass = choose_partners(np.array([7, 9]), labels, cams, scores, [0, 1, 2], "code", 1, np.random.default_rng(0))
    assert partners.tolist() == [6, 8]  # nearest head rows of any head class
    assert hclass.tolist() == [2, 1]


def test_knn_is_exact_across_chunks():
    rng = np.random.default_rng(0)
    cams = rng.random((50, 3, 3)).astype(np.float32)
    cand = np.array([3, 17, 5, 40, 22, 9, 31])
    got = knn_rows(cams[[0, 1]].reshape(2, -1), cams, cand, 3, chunk=2)
    for q in (0, 1):
        d = np.linalg.norm(cams[cand].reshape(len(cand), -1) - cams[q].reshape(-1), axis=1)
        assert got[q].tolist() == cand[np.argsort(d)[:3]].tolist()


# ---- the augmenter ---------------------------------------------------------------------------


def _fsa(tmp_path, **fusion):
    return make_augmenter("fsa-il", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES, il=ILConfig(generations=2, ngf=8, batch_size=128, max_depth=2), fusion=FusionConfig(**{"n_per_class": 6, **fusion}), work_dir=str(tmp_path))


def test_fsa_il_is_registered():
    make_augmenter("fsa-il", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES)
    assert "fsa-il" in AUGMENTERS
    with pytest.raises(KeyError, match="unknown augmenter 'nope'; available: .*'fsa-il'"):
        make_augmenter("nope")


def test_fit_resample_gives_n_finite_samples_per_tail_class(latents, tmp_path):
    z, y, prior = latents
    aug = _fsa(tmp_path / "a")
    X_res, y_res = aug.fit_resample(z[:400], y[:400])
    assert len(X_res) == 400 + 6 * 5 and torch.equal(X_res[:400], z[:400])
    new, new_y = X_res[400:], y_res[400:]
    assert torch.isfinite(new).all() and set(np.unique(new_y)) <= {0, 1}
    for j, c in enumerate(TAIL_CLASSES):
        assert (new_y[6 * j : 6 * j + 6, PAPER_CLASSES.index(c)] == 1).all()  # each carries its tail class
    # union policy: tail labels OR partner labels
    tail_pos, partner_pos = aug.partners_[:, 0], aug.partners_[:, 1]
    np.testing.assert_array_equal(new_y, y[:400][tail_pos] | y[:400][partner_pos])
    images = prior.decode(new)
    assert images.min() >= 0 and images.max() <= 1 and torch.isfinite(images).all()
    # same seed, same output
    X2, y2 = _fsa(tmp_path / "b").fit_resample(z[:400], y[:400])
    assert torch.equal(X2, X_res) and np.array_equal(y2, y_res)


def test_label_policies_and_sampled_thresholds(latents, tmp_path):
    z, y, _ = latents
    aug = _fsa(tmp_path / "t", label_policy="tail", thresholds="sampled")
    _, new_y = aug.fit_generate(z[:400], y[:400])
    assert new_y.sum(1).tolist() == [1] * 30
    tau_h, tau_l = aug.thresholds_
    assert tau_h != 0.4 and 0.0 < tau_h < 1.0 and 0.0 < tau_l < 1.0
    calls = []

    def oracle(latent):
        calls.append(len(latent))
        return np.tile(np.eye(10)[0], (len(latent), 1))

    aug = make_augmenter("fsa-il", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES, il=ILConfig(generations=1, ngf=8, batch_size=128, max_depth=2), fusion=FusionConfig(n_per_class=3, label_policy="oracle"), oracle=oracle, work_dir=str(tmp_path / "o"))
    _, new_y = aug.fit_generate(z[:400], y[:400])
    assert sum(calls) == 15 and (new_y[:, 0] == 1).all() and new_y[:, 1:].sum() == 0


def test_refinement_goes_through_the_prior(latents, tmp_path):
    z, y, prior = latents
    aug = make_augmenter("fsa-il", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES, il=ILConfig(generations=1, ngf=8, batch_size=128, max_depth=2), fusion=FusionConfig(n_per_class=2, refine_steps=2), prior=prior, work_dir=str(tmp_path / "r"))
    with prior.count_unet() as c:
        new, _ = aug.fit_generate(z[:300], y[:300])
    assert c.rows == 10 * 2 * 2  # 10 samples x 2 steps x guidance
    base, _ = make_augmenter("fsa-il", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES, il=ILConfig(generations=1, ngf=8, batch_size=128, max_depth=2), fusion=FusionConfig(n_per_class=2), work_dir=str(tmp_path / "r0")).fit_generate(z[:300], y[:300])
    assert torch.isfinite(new).all() and not torch.equal(new, base)
    with pytest.raises(ValueError, match="needs a prior"):
        _fsa(tmp_path / "np", refine_steps=1).fit_generate(z[:300], y[:300])


def test_bad_input_is_rejected(tmp_path):
    aug = _fsa(tmp_path)
    with pytest.raises(ValueError, match="0/1"):
        aug.fit_resample(torch.randn(4, 4, 16, 16), -np.ones((4, 10)))
    with pytest.raises(ValueError, match="NaN"):
        aug.fit_resample(torch.full((4, 4, 16, 16), float("nan")), np.zeros((4, 10)))


@pytest.mark.slow
def test_cli_train_il_and_augment(tmp_path):
    import subprocess
    import sys

    import pandas as pd

    def run(*args):
        r = subprocess.run([sys.executable, "-m", "ltbench", *args], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    data, store, il_run, out = (str(tmp_path / n) for n in ("data", "store", "il", "aug"))
    run("data", "phantom", "--n", "300", "--size", "64", "--seed", "5", "--out", data, "--quiet")
    run("encode", "--data", data, "--prior", "phantom", "--out", store, "--quiet", "--batch-size", "64")
    run("train-il", "--latents", store, "--out", il_run, "--generations", "2", "--ngf", "8", "--max-depth", "2", "--batch-size", "128", "--quiet")
    assert len(open(os.path.join(il_run, "log.jsonl")).readlines()) == 2
    r = run("augment", "--latents", store, "--il", il_run, "--steps", "1", "--n-per-class", "2", "--tail", "Pneumothorax,Fracture", "--out", out, "--quiet")
    assert "fsa-il@1" in r.stdout and "2 UNet evaluations per sample" in r.stdout
    df = pd.read_csv(os.path.join(out, "labels.csv"))
    assert len(df) == 4 and set(df[list(PAPER_CLASSES)].to_numpy().ravel()) <= {0, 1}
    assert np.load(os.path.join(out, "latents.npy")).shape == (4, 8, 16, 16)  # the shipped prior: 8 latent channels
    assert df.groupby("tail_class").size().to_dict() == {"Fracture": 2, "Pneumothorax": 2}
    assert (df["Pneumothorax"][df["tail_class"] == "Pneumothorax"] == 1).all()
    # any registered augmenter runs through the same command
    out2 = str(tmp_path / "smote")
    r = run("augment", "--method", "smote", "--latents", store, "--n-per-class", "3", "--tail", "Pneumothorax,Fracture", "--out", out2, "--quiet")
    df = pd.read_csv(os.path.join(out2, "labels.csv"))
    assert len(df) == 6 and df["Pneumothorax"].sum() >= 3 and df["Fracture"].sum() >= 3
    assert np.load(os.path.join(out2, "latents.npy")).shape == (6, 8, 16, 16)
    bad = subprocess.run([sys.executable, "-m", "ltbench", "augment", "--method", "smote", "--steps", "1", "--latents", store, "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "applies to fsa-il only" in bad.stderr and "Traceback" not in bad.stderr


def test_il_files_are_loaded_weights_only_and_a_crafted_pickle_never_runs(tmp_path):
    """`ltbench augment --il DIR` and resuming `train-il --out` read user paths: a model.pt
    whose pickle calls a function must be refused without calling it."""
    import pickle

    from ltbench.method.il import load_il

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "il").mkdir()
    with open(tmp_path / "il" / "model.pt", "wb") as f:
        pickle.dump({"config": {}, "model": Evil()}, f)
    with pytest.raises(ValueError, match="model.pt (was refused|is not an ltbench IL checkpoint)"):
        load_il(str(tmp_path / "il"))
    assert not marker.exists()
