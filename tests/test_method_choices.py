"""The method's options measured by the diagnostics: CAM choices, the random-mask control, the
authors' train-mode decoder, per-class partner confusion, candidates, refinement prompts,
paired refinement, and BatchNorm recalibration in iterated learning."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from ltbench.augment import make_augmenter
from ltbench.augment.fsa_il import generate_fusions, refine_prompts
from ltbench.data.classes import HEAD_CLASSES, PAPER_CLASSES, TAIL_CLASSES
from ltbench.method.cam import CAM_LAYERS, CAM_METHODS, class_activation_maps, example_targets
from ltbench.method.fusion import FusionConfig, choose_partners, fuse_authors, fuse_batch, random_like_masks
from ltbench.method.il import ILConfig, train_il

SMALL = ILConfig(generations=1, ngf=8, batch_size=128, max_depth=2)


@pytest.fixture(scope="module")
def fitted(latents, tmp_path_factory):
    z, y, _ = latents
    aug = make_augmenter("fsa-il", classes=PAPER_CLASSES, head=HEAD_CLASSES, tail=TAIL_CLASSES, il=SMALL, fusion=FusionConfig(n_per_class=4), work_dir=str(tmp_path_factory.mktemp("fit"))).fit(z[:400], y[:400])
    return aug.model_, aug.cams_, aug.scores_


# ---- CAM choices ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", CAM_METHODS)
@pytest.mark.parametrize("layers", CAM_LAYERS)
def test_every_cam_choice_is_pytorch_grad_cam_on_the_named_layers(fitted, latents, method, layers):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from ltbench.method.cam import _OnSparse
    from ltbench.method.networks import cam_layers

    model, _, _ = fitted
    z, y, _ = latents
    with torch.no_grad():
        s = model.sparse(z[:6])
    targets = np.array([0, 3, 5, 6, 8, 9])
    maps = class_activation_maps(model, s, method, layers, targets)
    assert maps.shape == (6, 16, 16) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    cls = {"eigencam": pgc.EigenCAM, "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus}[method]
    tl = cam_layers(model.classifier, layers)
    assert len(tl) == (1 if layers == "last" else 3)
    with cls(model=_OnSparse(model.classifier), target_layers=tl) as cam:
        direct = cam(input_tensor=s, targets=None if method == "eigencam" else [ClassifierOutputTarget(int(t)) for t in targets])
    np.testing.assert_allclose(maps, direct, atol=1e-6)
    model.zero_grad(set_to_none=True)


def test_multi_layer_maps_are_finer_than_the_last_block(fitted, latents):
    """On 16x16 latents the last block is 2x2: its EigenCAM is a bilinear ramp, the same
    shape for every image. Earlier layers (8x8, 4x4) add structure that varies by image."""
    model, _, _ = fitted
    z, _, _ = latents
    with torch.no_grad():
        s = model.sparse(z[:64])
    last = class_activation_maps(model, s, "eigencam", "last")
    multi = class_activation_maps(model, s, "eigencam", "multi")
    # second differences along a row: ~0 for a bilinear upsampling of 2x2, not for 8x8 detail
    curv = lambda m: np.abs(np.diff(m, 2, axis=2)).mean()  # noqa: E731
    assert curv(multi) > 2 * curv(last)


def test_class_targeted_maps_depend_on_the_target_and_eigencam_does_not(fitted, latents):
    model, _, _ = fitted
    z, _, _ = latents
    with torch.no_grad():
        s = model.sparse(z[:8])
    a = class_activation_maps(model, s, "gradcam", "multi", np.zeros(8, int))
    b = class_activation_maps(model, s, "gradcam", "multi", np.full(8, 9))
    assert np.abs(a - b).mean() > 1e-3
    e1 = class_activation_maps(model, s, "eigencam", "multi", np.zeros(8, int))
    e2 = class_activation_maps(model, s, "eigencam", "multi", np.full(8, 9))
    np.testing.assert_array_equal(e1, e2)
    with pytest.raises(ValueError, match="one target class per map"):
        class_activation_maps(model, s, "gradcam++", "last")


def test_targets_are_the_rarest_positive_label_else_the_top_score():
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]])
    scores = np.array([[0.1, 0.2, 0.3]] * 4 + [[0.9, 0.0, 0.0]])
    # prevalence: class 0 0.8, class 1 0.4, class 2 0.2
    assert example_targets(labels, scores).tolist() == [1, 0, 2, 2, 0]


# ---- masks, decoder, partners, prompts -----------------------------------------------------


def test_random_mask_control_has_the_cam_masks_area_elsewhere():
    m = torch.zeros(3, 16, 16, dtype=torch.bool)
    m[0, :4] = True  # 64 cells
    m[1, 5, 5] = True  # 1 cell
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    r = random_like_masks(m, gens)
    assert r.flatten(1).sum(1).tolist() == [64, 1, 0]
    assert not torch.equal(r[0], m[0])  # not where the CAM put it (64 random cells of 256)
    r2 = random_like_masks(m, [torch.Generator().manual_seed(i) for i in range(3)])
    assert torch.equal(r, r2)  # per-sample generators: reproducible


def test_random_masks_change_the_fusion_but_not_m_r(fitted, latents):
    model, cams, _ = fitted
    z, _, _ = latents
    ct, ch = torch.from_numpy(np.asarray(cams[:4], np.float32)), torch.from_numpy(np.asarray(cams[4:8], np.float32))
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(4)]  # noqa: E731
    a = fuse_batch(model, z[:4], z[4:8], ct, ch, 0.4, 0.4, 0.5, gens())
    b = fuse_batch(model, z[:4], z[4:8], ct, ch, 0.4, 0.4, 0.5, gens(), random_masks=True)
    assert a.shape == b.shape and not torch.allclose(a, b)
    # where M^S and M^G agree everywhere (both all-on), only M^R decides, and it is drawn first
    one = torch.ones(4, 16, 16)
    zero = torch.zeros(4, 16, 16)
    c = fuse_batch(model, z[:4], z[4:8], one, zero, 0.4, 0.4, 0.5, gens())
    d = fuse_batch(model, z[:4], z[4:8], one, zero, 0.4, 0.4, 0.5, gens(), random_masks=True)
    torch.testing.assert_close(c, d)


def test_authors_decoder_normalises_each_pair_with_its_own_statistics(fitted, latents):
    import copy

    model, cams, _ = fitted
    z, _, _ = latents
    ct, ch = torch.from_numpy(np.asarray(cams[:5], np.float32)), torch.from_numpy(np.asarray(cams[5:10], np.float32))
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(5)]  # noqa: E731
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ev = fuse_batch(model, z[:5], z[5:10], ct, ch, 0.4, 0.4, 0.5, gens())
    au = fuse_authors(copy.deepcopy(model), z[:5], z[5:10], ct, ch, 0.4, 0.4, 0.5, gens())
    assert au.shape == ev.shape and torch.isfinite(au).all()
    assert (au - ev).norm() / ev.norm() > 0.05  # batch statistics of 2 samples are not the running ones
    # sample 1 depends on its pair partner (sample 0), not only on itself
    other = z[:5].clone()
    other[0] = z[20]
    au2 = fuse_authors(copy.deepcopy(model), other, z[5:10], ct, ch, 0.4, 0.4, 0.5, gens())
    assert not torch.allclose(au[1], au2[1]) and torch.allclose(au[2:], au2[2:])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    dataset = TensorDataset(z[:400], torch.from_numpy(latents[1][:400]).float(), torch.arange(400))
    generate_fusions(model, dataset, cams, fitted[2], PAPER_CLASSES, HEAD_CLASSES, TAIL_CLASSES, FusionConfig(n_per_class=3, decoder="train-batch2"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the caller's model was changed"


def _world():
    labels = np.zeros((10, 4), np.uint8)
    labels[[7, 9], 3] = 1
    labels[[1, 4, 6], 2] = 1
    labels[[0, 2], 0] = 1
    labels[[3, 5, 8], 1] = 1
    labels[6, 3] = 1  # a head-class-2 example that also carries the tail label
    cams = np.zeros((10, 2, 2), np.float32)
    for r in range(10):
        cams[r] = r / 10.0
    return labels, cams


def test_class_confusion_picks_one_head_class_for_the_whole_tail_class():
    labels, cams = _world()
    scores = np.zeros((10, 4), np.float32)
    scores[7, [1, 2]] = [0.9, 0.0]  # example 7 alone: most confused with class 1
    scores[9, [1, 2]] = [0.0, 0.8]
    scores[6, [1, 2]] = [0.0, 0.8]  # over the class (rows 6, 7, 9): class 2 wins on average
    _, per_example = choose_partners(np.array([7, 9]), labels, cams, scores, [0, 1, 2], "paper", 1, np.random.default_rng(0))
    assert per_example.tolist() == [1, 2]
    _, per_class = choose_partners(np.array([7, 9]), labels, cams, scores, [0, 1, 2], "class-confusion", 1, np.random.default_rng(0), class_pos=np.array([6, 7, 9]))
    assert per_class.tolist() == [2, 2]


def test_no_tail_candidates_exclude_examples_with_a_tail_label():
    labels, cams = _world()
    scores = np.zeros((10, 4), np.float32)
    scores[:, 2] = 0.9
    anyp, _ = choose_partners(np.array([7]), labels, cams, scores, [0, 1, 2], "paper", 1, np.random.default_rng(0))
    assert anyp.tolist() == [6]  # nearest class-2 example, itself tail-labelled
    no_tail = labels[:, 3] == 0
    p, _ = choose_partners(np.array([7]), labels, cams, scores, [0, 1, 2], "paper", 1, np.random.default_rng(0), allowed=no_tail)
    assert p.tolist() == [4]


def test_refinement_prompt_is_the_tail_class_by_default():
    union = np.zeros((2, 10), np.uint8)
    union[:, [0, 6]] = 1
    assert FusionConfig().refine_prompt == "tail"
    assert refine_prompts(PAPER_CLASSES, 6, union, "tail") == [PAPER_CLASSES[6]] * 2
    assert refine_prompts(PAPER_CLASSES, 6, union, "union") == [f"{PAPER_CLASSES[0]} {PAPER_CLASSES[6]}"] * 2
    with pytest.raises(ValueError, match="refine_prompt"):
        FusionConfig(refine_prompt="both")


def test_fusions_before_refinement_are_the_same_at_every_k(fitted, latents):
    """@0 and @k are paired: the same partners, masks and M^R; refinement acts on exactly the
    @0 latents (with the tail-class prompt)."""
    model, cams, scores = fitted
    z, y, prior = latents
    data = TensorDataset(z[:400], torch.from_numpy(y[:400]).float(), torch.arange(400))

    class R:
        pass

    at0, y0 = generate_fusions(model, data, cams, scores, PAPER_CLASSES, HEAD_CLASSES, TAIL_CLASSES, FusionConfig(n_per_class=4, seed=3))
    seen = []
    real = prior.refine

    def spy(latents_, prompts, k, **kw):
        seen.append((latents_.clone(), list(prompts)))
        return real(latents_, prompts, k, **kw)

    prior.refine = spy
    try:
        r = R()
        at5, y5 = generate_fusions(model, data, cams, scores, PAPER_CLASSES, HEAD_CLASSES, TAIL_CLASSES, FusionConfig(n_per_class=4, seed=3, refine_steps=5), prior=prior, record=r, keep_unrefined=True)
    finally:
        prior.refine = real
    torch.testing.assert_close(torch.cat([s[0] for s in seen]), at0, rtol=0, atol=0)
    torch.testing.assert_close(r.unrefined_, at0, rtol=0, atol=0)
    assert np.array_equal(y0, y5) and not torch.allclose(at5, at0)
    assert [p for s in seen for p in s[1]] == [c for c in TAIL_CLASSES for _ in range(4)]


# ---- iterated learning: BatchNorm recalibration, logs ---------------------------------------


def _recon_gap(model, z):
    """Relative reconstruction error of D(S(z)) in eval mode and in train mode (batch stats)."""
    model.eval()
    with torch.no_grad():
        ev = ((model(z)[1] - z).norm() / z.norm()).item()
        model.train()
        tr = ((model(z)[1] - z).norm() / z.norm()).item()
    model.eval()
    return ev, tr


def test_batchnorm_recalibration_makes_eval_mode_match_train_mode(latents, tmp_path):
    """A fit with few batches per epoch: BatchNorm's running statistics (momentum 0.1) lag the
    weights unless re-estimated after interaction, and eval-mode D(S(z)) is then far worse
    than with batch statistics (measured: 0.99 vs 0.53 relative error). Recalibrated, the two
    agree within 2% of the train-mode error."""
    z, y, _ = latents
    train = TensorDataset(z[:512], torch.from_numpy(y[:512]).float(), torch.arange(512))
    cfg = ILConfig(generations=3, ngf=16, batch_size=128, max_depth=3, lr=2e-3)
    on = train_il(train, None, cfg, str(tmp_path / "on"), progress=False)
    off = train_il(train, None, ILConfig(**{**cfg.__dict__, "bn_recalibration": 0}), str(tmp_path / "off"), progress=False)
    ev_on, tr_on = _recon_gap(on, z[:512])
    ev_off, tr_off = _recon_gap(off, z[:512])
    assert abs(ev_on - tr_on) <= 0.02 * tr_on, (ev_on, tr_on)  # measured: equal to 1e-5
    assert ev_off - tr_off > 0.15 * tr_off, (ev_off, tr_off)  # the control: without it eval mode lags


def test_validation_is_logged_after_interaction_with_sparsity(latents, tmp_path):
    z, y, _ = latents
    train = TensorDataset(z[:300], torch.from_numpy(y[:300]).float(), torch.arange(300))
    val = TensorDataset(z[300:400], torch.from_numpy(y[300:400]).float(), torch.arange(100))
    model = train_il(train, val, ILConfig(generations=2, ngf=8, batch_size=128, max_depth=2), str(tmp_path), progress=False)
    lines = [json.loads(s) for s in open(tmp_path / "log.jsonl")]
    assert [e["generation"] for e in lines] == [0, 1] and all(e["val"] is not None for e in lines)
    # the last line's validation is the returned model's (interaction, no imitation after it):
    # its reconstruction, and its sparsity = the mean over positions of S(z)'s largest channel
    # probability, recomputed here from the model itself
    from ltbench.method.il import evaluate

    assert evaluate(model, val, ILConfig(generations=2, ngf=8, batch_size=128, max_depth=2))["recon"] == pytest.approx(lines[-1]["val"]["recon"], rel=1e-5)
    with torch.no_grad():
        direct = float(model.eval().sparse(z[300:400]).amax(1).mean())
    assert lines[-1]["val"]["sparsity"] == pytest.approx(direct, rel=1e-5)
    assert lines[-1]["val"]["sparsity"] > 1.0 / 64 + 0.01  # the codes are sparser than uniform after training


def test_ilconfig_rejects_a_negative_recalibration():
    with pytest.raises(ValueError, match="bn.recalibration"):
        ILConfig(bn_recalibration=-1)
