"""The training-side contract (``ltbench.eval.training``) and its long-tail rows: each loss
against its paper's equation on a hand-built case, the plain path unchanged, rows with zero
change reproducing ``none`` exactly, the losses' rows paired with ``none``, cRT's frozen
representation and balanced batches, the registry, and the errors."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ltbench.eval.classifier as C
import ltbench.eval.training as T
from ltbench.eval.classifier import ClassifierConfig, paired_batches, predict, train_classifier, warm_start

# the smallest DenseNet the harness builds (every dense block kept, 2 channels per layer)
CFG = ClassifierConfig(steps=3, warm_steps=2, batch_size=8, growth_rate=2, init_features=4, input_size=32, lr=5e-3)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Networks this small lose more to thread hand-offs than they gain (a loaded 2-core
    machine runs them ~20x slower on 2 threads)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    """40 real images (every class with positives and negatives) and 8 'generated' ones."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 32, 32), generator=g, dtype=torch.uint8)
    y = (torch.rand(48, 3, generator=g) < 0.35).to(torch.uint8)
    y[:2] = torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.uint8)
    return x, y, 40


@pytest.fixture(scope="module")
def warm(data):
    x, y, n_real = data
    return warm_start(x[:n_real], y[:n_real], CFG, seed=3)


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


# ---- each loss against its equation ----------------------------------------------------
# real train labels: class 0 positive on 3 of 4 images, class 1 on 1 of 4
Y_REAL = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 0]], dtype=torch.float32)
LOGITS = torch.tensor([[2.0, -1.0], [-0.5, 0.3]])
TARGETS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
CELLS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def _x(i, k):
    return float(LOGITS[i, k])


def test_wbce_is_bce_with_negatives_over_positives_as_positive_weights():
    for power, w in ((1.0, [1 / 3, 3.0]), (0.5, [math.sqrt(1 / 3), math.sqrt(3)])):  # (N - n_k) / n_k = 1/3, 3
        method = T.make_training_method("wbce", power=power).fit(Y_REAL)
        terms = [-(w[k] * math.log(_sigmoid(_x(i, k))) if TARGETS[i, k] else math.log(1 - _sigmoid(_x(i, k)))) for i, k in CELLS]
        assert float(method.loss(LOGITS, TARGETS)) == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_logit_adjustment_shifts_each_logit_by_tau_times_the_log_prior_odds():
    offset = [math.log(0.75 / 0.25), math.log(0.25 / 0.75)]  # pi = 3/4, 1/4
    for tau in (1.0, 0.5):
        method = T.make_training_method("logit-adj", tau=tau).fit(Y_REAL)
        terms = []
        for i, k in CELLS:
            p = _sigmoid(_x(i, k) + tau * offset[k])
            terms.append(-math.log(p) if TARGETS[i, k] else -math.log(1 - p))
        assert float(method.loss(LOGITS, TARGETS)) == pytest.approx(sum(terms) / 4, rel=1e-6)


def _asl_by_hand(gamma_pos, gamma_neg, m, w):
    """Ridnik et al.'s L = -y (1 - p)^g+ log p - (1 - y) p_m^g- log(1 - p_m), p_m = max(p - m, 0),
    times the class weight, averaged over the four cells."""
    terms = []
    for i, k in CELLS:
        p = _sigmoid(_x(i, k))
        if TARGETS[i, k]:
            terms.append(-w[k] * (1 - p) ** gamma_pos * math.log(p))
        else:
            pm = max(p - m, 0.0)
            terms.append(-w[k] * pm**gamma_neg * math.log(1 - pm))
    return sum(terms) / 4


def test_asl_is_the_papers_asymmetric_loss_with_class_weights():
    # (N / n_k)^0.5 = sqrt(4/3), 2, normalised to mean 1
    r = [math.sqrt(4 / 3), 2.0]
    w = [v / (sum(r) / 2) for v in r]
    method = T.make_training_method("asl").fit(Y_REAL)  # the paper's gamma+ = 0, gamma- = 4, m = 0.05
    assert float(method.loss(LOGITS, TARGETS)) == pytest.approx(_asl_by_hand(0, 4, 0.05, w), rel=1e-6)
    method = T.make_training_method("asl", gamma_pos=1.0, gamma_neg=2.0, clip=0.2, power=1.0).fit(Y_REAL)
    r = [4 / 3, 4.0]
    w = [v / (sum(r) / 2) for v in r]
    assert float(method.loss(LOGITS, TARGETS)) == pytest.approx(_asl_by_hand(1, 2, 0.2, w), rel=1e-6)


def test_asl_with_unit_weights_is_timms_unweighted_loss():
    from timm.loss import AsymmetricLossMultiLabel

    g = torch.Generator().manual_seed(1)
    logits, targets = 3 * torch.randn(16, 5, generator=g), (torch.rand(16, 5, generator=g) < 0.3).float()
    y_real = torch.eye(5).repeat(3, 1)
    method = T.make_training_method("asl", power=0.0).fit(y_real)
    assert torch.equal(method.class_weight_, torch.ones(5))
    ref = AsymmetricLossMultiLabel(gamma_neg=4, gamma_pos=0, clip=0.05, reduction="mean")
    assert float(method.loss(logits, targets)) == pytest.approx(float(ref(logits, targets)), rel=1e-6)


# ---- the harness's plain path, and rows with zero change -------------------------------
def _harness_as_it_was(x, y, n_real, cfg, seed, init):
    """train_classifier before training methods existed (single process), line for line."""
    net = C._seeded_net(y.shape[1], seed, init, "cpu", cfg)
    lr = cfg.finetune_lr if init is not None and cfg.finetune_lr > 0 else cfg.lr
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=cfg.steps)
    net.train()
    y = y.float()
    for b in paired_batches(n_real, len(x) - n_real, cfg.steps, cfg.batch_size, seed, cfg.generated_share):
        loss = F.binary_cross_entropy_with_logits(net(C._prep(x[b], cfg)), y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def test_the_plain_path_is_the_harness_as_it_was(data, warm):
    x, y, n_real = data
    for init in (None, warm):
        ref = _state(_harness_as_it_was(x, y, n_real, CFG, 3, init))
        for method in (None, "bce", T.PlainBCE()):
            assert _equal(_state(train_classifier(x, y, CFG, seed=3, n_real=n_real, init=init, method=method)), ref), (init is None, method)


def test_rows_with_zero_change_reproduce_none_exactly(data, warm):
    """Same init, same real stream, same budget: wbce with all weights 1 and logit-adj with
    tau 0 give the `none` row's network bit for bit, and its scores; with their defaults they
    do not (so the method is really in the loop)."""
    x, y, n_real = data
    none = train_classifier(x, y, CFG, seed=3, n_real=n_real, init=warm)
    ref, ref_scores = _state(none), predict(none, x, CFG)
    for name, zero, default in (("wbce", {"power": 0.0}, {}), ("logit-adj", {"tau": 0.0}, {})):
        net = train_classifier(x, y, CFG, seed=3, n_real=n_real, init=warm, method=T.make_training_method(name, **zero))
        assert _equal(_state(net), ref), name
        assert np.array_equal(predict(net, x, CFG), ref_scores), name
        moved = train_classifier(x, y, CFG, seed=3, n_real=n_real, init=warm, method=T.make_training_method(name, **default))
        assert not torch.equal(moved.classifier.weight, none.classifier.weight), name


def _batches_seen(monkeypatch, run):
    """The index batches the harness trains on (its `_rows` calls during `run`)."""
    seen, rows = [], C._rows
    monkeypatch.setattr(C, "_rows", lambda x, idx: (seen.append(torch.as_tensor(idx).clone()), rows(x, idx))[1])
    run()
    monkeypatch.setattr(C, "_rows", rows)
    return seen


def test_loss_rows_see_exactly_the_batches_of_none(data, warm, monkeypatch):
    x, y, n_real = data
    expected = list(paired_batches(n_real, len(x) - n_real, CFG.steps, CFG.batch_size, 3))
    assert any((b >= n_real).any() for b in expected)  # generated slots are in the stream
    for method in (None, "wbce", "asl", "logit-adj"):
        seen = _batches_seen(monkeypatch, lambda: train_classifier(x, y, CFG, seed=3, n_real=n_real, init=warm, method=method))
        assert len(seen) == CFG.steps and all(torch.equal(a, b) for a, b in zip(seen, expected)), method


# ---- cRT -------------------------------------------------------------------------------
def test_crt_retrains_only_the_classifier_on_class_balanced_batches(monkeypatch):
    """Mutually exclusive labels: 30 images of class 0, 6 of class 1, 3 of class 2, 21 with
    none. Instance-balanced batches give class 2 one slot in 20; cRT's give each of the four
    groups (three classes and the unlabelled) a quarter. Everything but the final layer, the
    BatchNorm statistics included, stays the warm start's."""
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (60, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.zeros(60, 3, dtype=torch.uint8)
    y[:30, 0], y[30:36, 1], y[36:39, 2] = 1, 1, 1
    w = warm_start(x, y, CFG, seed=1)
    cfg = dataclasses.replace(CFG, steps=40, batch_size=16)
    nets = []
    seen = _batches_seen(monkeypatch, lambda: nets.append(train_classifier(x, y, cfg, seed=1, init=w, method="crt")))
    net = nets[0]
    after = net.state_dict()
    for k in w:
        if k.startswith("classifier."):
            assert not torch.equal(after[k], w[k]), k
        else:
            assert torch.equal(after[k], w[k]), k  # conv, BatchNorm weights and running statistics
    assert all(p.requires_grad for p in net.parameters())  # the freezing ended with the training
    slots = torch.cat(seen)
    assert len(slots) == 40 * 16
    group = torch.where(y[slots].bool().any(1), y[slots].float().argmax(1), torch.tensor(3))
    shares = torch.bincount(group, minlength=4).float() / len(slots)
    assert torch.allclose(shares, torch.full((4,), 0.25), atol=0.07), shares  # 4 sd at 640 draws
    plain = torch.cat(list(paired_batches(60, 0, 40, 16, 1)))
    assert (y[plain, 2] == 1).float().mean() < 0.1  # the instance-balanced stream it replaces
    with pytest.raises(ValueError, match="init="):
        train_classifier(x, y, cfg, seed=1, method="crt")


def test_crt_balances_any_class_count_with_co_occurring_labels():
    """Twelve classes with overlapping labels: every slot is an image of the group drawn, so
    each class holds at least ~1/G of the slots however rare it is."""
    g = torch.Generator().manual_seed(5)
    y = (torch.rand(500, 12, generator=g) < torch.logspace(-0.3, -2.2, 12)).float()
    y[0] = 1  # every class has a positive
    method = T.make_training_method("crt").fit(y)
    slots = torch.cat(list(method.batches(y, len(y), 200, 32, seed=0, share=0.0)))
    groups = 12 + int((y.sum(1) == 0).any())
    share = y[slots].mean(0)
    assert (share > 0.8 / groups).all(), share
    assert float(share[-1]) > 5 * float(y[:, -1].mean())  # the rarest class: over five times its prevalence


# ---- the registry and errors -----------------------------------------------------------
def test_training_methods_register_through_entry_points_one_way(tmp_path, monkeypatch, data):
    import subprocess
    import sys
    from importlib.metadata import EntryPoint

    assert {"bce", "wbce", "asl", "logit-adj", "crt"} <= set(T.training_method_names())
    code = "import sys, ltbench.eval.training as T; assert 'baselines' not in sys.modules; T.make_training_method('wbce'); assert 'baselines.wbce' in sys.modules and 'baselines.crt' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)

    (tmp_path / "my_method.py").write_text(
        "import torch.nn.functional as F\n"
        "from ltbench.eval.training import TrainingMethod\n"
        "class Mine(TrainingMethod):\n"
        "    name = 'mine'\n"
        "    calls = []\n"
        "    def fit(self, y_real):\n"
        "        self.n_real_ = len(y_real)\n"
        "        return self\n"
        "    def loss(self, logits, targets):\n"
        "        Mine.calls.append(len(logits))\n"
        "        return F.binary_cross_entropy_with_logits(logits, targets) * 0.5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = {**T._entry_points(), "mine": EntryPoint("mine", "my_method:Mine", T.ENTRY_POINT_GROUP)}
    monkeypatch.setattr(T, "_entry_points", lambda: eps)
    monkeypatch.delitem(T.TRAINING_METHODS, "mine", raising=False)
    assert "mine" in T.training_method_names() and "mine" not in T.TRAINING_METHODS  # listed, not imported
    x, y, n_real = data
    train_classifier(x, y, CFG, seed=3, n_real=n_real, method="mine")
    mine = T.TRAINING_METHODS["mine"]
    assert mine.__module__ == "my_method" and mine.calls == [CFG.batch_size] * CFG.steps
    instance = mine()
    train_classifier(x, y, CFG, seed=3, n_real=n_real, method=instance)
    assert instance.n_real_ == n_real  # fitted on the real rows only
    bad = {**eps, "wrong": EntryPoint("wrong", "my_method:Mine", T.ENTRY_POINT_GROUP)}
    monkeypatch.setattr(T, "_entry_points", lambda: bad)
    with pytest.raises(ValueError, match="whose `name` is 'mine'"):
        T.make_training_method("wrong")
    T.TRAINING_METHODS.pop("mine", None)


def test_bad_methods_and_labels_give_one_line_errors(data):
    x, y, n_real = data
    with pytest.raises(KeyError, match="unknown training method 'focal'; available: .*'wbce'"):
        train_classifier(x, y, CFG, method="focal")
    with pytest.raises(TypeError, match="method must be"):
        train_classifier(x, y, CFG, method=42)
    y0 = y.clone()
    y0[:n_real, 1] = 0  # class 1 only positive on generated rows: its real prior is 0
    for name in ("wbce", "asl", "logit-adj", "crt"):
        with pytest.raises(ValueError, match=rf"^{name}: class\(es\) \[1\] have no positive in the real train split"):
            train_classifier(x, y0, CFG, n_real=n_real, method=name)
    with pytest.raises(ValueError, match=r"class\(es\) \[0\] are positive on every"):
        T.make_training_method("logit-adj").fit(torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="power must be >= 0"):
        T.make_training_method("wbce", power=-1)
