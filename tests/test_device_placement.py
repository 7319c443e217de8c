"""Device placement caught without a GPU (issue 24, item 4).

The method's stages (iterated learning for two generations, CAMs, partner choice, fusion, the
augmenter) run with ``device=`` the device double of ``tests/placement.py``: every CPU tensor
that meets a device tensor fails here as it would fail on a GPU. The mutant tests remove one
``device=`` (or one move) from the real source and check that the double catches it; the AST
test checks that no factory call in ``ltbench/method`` or ``ltbench/augment`` leaves its device
to the default.
"""

import ast
import os
import types

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from ltbench.method.fusion import FusionConfig
from ltbench.method.il import ILConfig
from placement import FAKE, DeviceDouble, DevicePlacementError, run_on_double

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = ILConfig(sparse_channels=8, generations=2, ngf=4, max_depth=2, batch_size=32, lr=1e-3, bn_recalibration=32)
CLASSES, HEAD, TAIL = ["h0", "h1", "h2", "t0"], ["h0", "h1", "h2"], ["t0"]


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 4, 8, 8, generator=g)
    y = (torch.rand(n, 4, generator=g) < 0.3).float()
    y[:8, 3] = 1
    y[8:, 3] = 0
    z[y[:, 0] == 1, :, 2:5, 2:5] += 1.5
    return z, y


def _ds(z, y):
    return TensorDataset(z, y, torch.arange(len(z)))


# ---- the double itself ----------------------------------------------------------------------


def test_the_double_fails_where_cuda_fails_and_only_there():
    with DeviceDouble() as d:
        x = torch.ones(3, 4).to(FAKE)
        assert x.device == FAKE and d.on_device(x)
        assert d.on_device(x * 2 + torch.zeros(3, 4, device=x.device))  # made where x is
        assert d.on_device(x + torch.tensor(2.0))  # a 0-dim CPU tensor is a scalar to CUDA
        assert not d.on_device(x.cpu()) and x.cpu().numpy().shape == (3, 4)
        x[torch.tensor([0, 2])] = 0.0  # CPU index tensors are fine
        lin = torch.nn.Linear(4, 2).to(FAKE)
        assert all(d.on_device(p) for p in lin.parameters())
        lin(x).sum().backward()
        assert all(d.on_device(p.grad) for p in lin.parameters())
        with pytest.raises(DevicePlacementError, match="CPU tensor"):
            x + torch.zeros(3, 4)  # made without device=
        with pytest.raises(DevicePlacementError, match="CPU tensor"):
            torch.nn.Linear(4, 2)(x)  # a module never moved
        with pytest.raises(DevicePlacementError, match="numpy"):
            x.numpy()
        with pytest.raises(DevicePlacementError, match="CPU tensor"):
            x + torch.from_numpy(np.ones((3, 4), np.float32))  # from NumPy: a CPU tensor


# ---- the method on the device ---------------------------------------------------------------


@pytest.fixture(scope="module")
def il_on_device(tmp_path_factory):
    """Two generations (interaction, BatchNorm recalibration, validation, imitation) on the double."""
    from ltbench.method.il import train_il

    z, y = _data()
    out = str(tmp_path_factory.mktemp("il-double"))
    model, double = run_on_double(train_il, _ds(z, y), _ds(z[:16], y[:16]), CFG, out, progress=False, device=FAKE)
    return model, double, out


def test_iterated_learning_keeps_everything_on_the_device(il_on_device):
    model, double, out = il_on_device
    assert all(double.on_device(p) for p in model.parameters()) and all(double.on_device(b) for b in model.buffers())
    assert double.device_results > 1000 and double.calls > 5000  # it saw the whole fit, not a stub
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["gen-000.pt", "gen-001.pt"]


@pytest.mark.slow
def test_the_double_changes_placement_not_numbers(il_on_device, tmp_path, monkeypatch):
    """The same fit on the CPU, with the references the double's meta tensors dispatch to,
    gives the same weights bit for bit: the double tags tensors and changes nothing else."""
    from ltbench.method.il import train_il
    from ltbench.ops import method_ops

    monkeypatch.setattr(method_ops, "_FUSED", False)
    z, y = _data()
    ref = train_il(_ds(z, y), _ds(z[:16], y[:16]), CFG, str(tmp_path), progress=False, device="cpu")
    model = il_on_device[0]
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_load_il_and_cams_on_the_device(il_on_device, tmp_path):
    from ltbench.method.cam import compute_cams
    from ltbench.method.il import load_il

    _, _, out = il_on_device
    z, y = _data()
    for method, layers in (("eigencam", "last"), ("gradcam++", "multi")):
        with DeviceDouble() as d:
            model = load_il(out, device=FAKE)
            assert all(d.on_device(p) for p in model.parameters())
            cams, scores = compute_cams(model, _ds(z, y), str(tmp_path / method), batch_size=24, progress=False, method=method, layers=layers, device=FAKE)
        assert cams.shape == (64, 8, 8) and scores.shape == (64, 4)
        if method == "eigencam":
            continue
        # the same maps as on the CPU without the double (the tiny model's GradCAM++ may be NaN)
        ref = compute_cams(load_il(out, device="cpu"), _ds(z, y), str(tmp_path / f"{method}-cpu"), batch_size=24, progress=False, method=method, layers=layers, device="cpu")
        assert np.array_equal(cams, ref[0], equal_nan=True) and np.array_equal(scores, ref[1], equal_nan=True)


@pytest.mark.parametrize("fusion", [
    dict(),  # paper rule, fixed p, eval decoder
    dict(p_mode="sampled", masks="random", partner_rule="code", partner_candidates="any", thresholds="sampled"),
    dict(decoder="train-batch2", partner_rule="class-confusion", label_policy="tail"),
], ids=["paper", "sampled-random-code", "authors"])  # fmt: skip
def test_partners_and_fusion_on_the_device(il_on_device, fusion):
    from ltbench.augment.fsa_il import generate_fusions

    model = il_on_device[0]
    z, y = _data()
    g = torch.Generator().manual_seed(1)
    cams, scores = torch.rand(64, 8, 8, generator=g).numpy(), torch.rand(64, 4, generator=g).numpy()
    with DeviceDouble() as d:
        zf, yf = generate_fusions(model, _ds(z, y), cams, scores, CLASSES, HEAD, TAIL, FusionConfig(n_per_class=5, batch_size=3, **fusion), device=FAKE)
        assert not d.on_device(zf)  # the augmenter contract: host tensors out
    assert zf.shape == (5, 4, 8, 8) and torch.isfinite(zf).all() and yf.shape == (5, 4)


@pytest.mark.slow
def test_the_augmenter_end_to_end_on_the_device(tmp_path):
    from ltbench.augment import make_augmenter

    z, y = _data()
    aug = make_augmenter("fsa-il", classes=CLASSES, head=HEAD, tail=TAIL, il=CFG, fusion=FusionConfig(n_per_class=3), work_dir=str(tmp_path), device=FAKE)
    (X, Y), _ = run_on_double(aug.fit_resample, z, y.numpy().astype(np.uint8))
    assert X.shape == (67, 4, 8, 8) and Y.shape == (67, 4)
    assert aug.device_ == "meta" and aug.ops_backend_ == "reference"


# ---- mutants: one device= removed from the real source, and the double sees it ---------------


def _mutant(module, old: str, new: str):
    """``module`` re-executed from its own source with ``old`` replaced by ``new`` (once)."""
    with open(module.__file__) as f:
        src = f.read()
    assert src.count(old) == 1, f"{old!r} is not (once) in {module.__file__}: update the mutant test"
    mod = types.ModuleType(module.__name__ + "_mutant")
    mod.__file__ = module.__file__
    exec(compile(src.replace(old, new), module.__file__, "exec"), mod.__dict__)
    return mod


def test_a_missing_device_in_iterated_learning_is_caught(tmp_path):
    """pos_weight made without device=: BCE-with-logits then meets a CPU [K] tensor."""
    import ltbench.method.il as il

    bad = _mutant(il, "dtype=torch.float32, device=dev) if cfg.pos_weight", "dtype=torch.float32) if cfg.pos_weight")
    z, y = _data()
    with pytest.raises(DevicePlacementError, match="binary_cross_entropy_with_logits"):
        run_on_double(bad.train_il, _ds(z, y), None, CFG, str(tmp_path), progress=False, device=FAKE)


def test_a_missing_device_in_partner_search_is_caught():
    """knn_rows' running best distances made without device=."""
    import ltbench.method.fusion as fusion

    bad = _mutant(fusion, 'best_d = torch.full((len(q), 0), float("inf"), device=dev)', 'best_d = torch.full((len(q), 0), float("inf"))')
    cams = torch.rand(20, 4, 4, generator=torch.Generator().manual_seed(0)).numpy()
    with pytest.raises(DevicePlacementError, match="cat"):
        run_on_double(bad.knn_rows, cams[:3].reshape(3, -1), cams, np.arange(5, 20), 2, device=FAKE)
    got, _ = run_on_double(fusion.knn_rows, cams[:3].reshape(3, -1), cams, np.arange(5, 20), 2, device=FAKE)
    assert np.array_equal(got, fusion.knn_rows(cams[:3].reshape(3, -1), cams, np.arange(5, 20), 2))


def test_a_uniform_left_on_the_cpu_in_fusion_is_caught(il_on_device):
    """M^R's uniforms drawn on the CPU and not copied to the device."""
    import ltbench.method.fusion as fusion

    bad = _mutant(fusion, "    u = to_device(u, dev)\n", "")
    model = il_on_device[0]
    z, _ = _data()
    cam = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    with pytest.raises(DevicePlacementError, match="lt"):
        run_on_double(bad.fuse_batch, model, z[:4], z[4:8], cam, cam, 0.4, 0.4, 0.5, gens, device=FAKE)
    out, _ = run_on_double(fusion.fuse_batch, model, z[:4], z[4:8], cam, cam, 0.4, 0.4, 0.5, gens, device=FAKE)
    assert out.shape == (4, 4, 8, 8)


# ---- no factory call without an explicit device ---------------------------------------------

FACTORY_NAMES = {"rand", "randn", "randint", "randperm", "zeros", "ones", "empty", "full", "arange", "tensor", "eye", "linspace"}
# (file, line text) of factory calls meant to make a CPU tensor without saying so: none today.
# An entry needs a reason, e.g. ("ltbench/method/x.py", "torch.rand(n)"): "a CPU generator's draw".
ALLOWED: dict = {}


def _factory_calls_without_device(path: str) -> list:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORY_NAMES:
            base = node.func.value
            if isinstance(base, ast.Name) and base.id == "torch" and not any(k.arg == "device" for k in node.keywords):
                bad.append((node.lineno, ast.unparse(node)))
    return bad


def test_no_factory_without_an_explicit_device_in_the_method():
    """Every torch.rand/randn/randint/randperm/zeros/ones/empty/full/arange/tensor/eye/linspace in
    ltbench/method and ltbench/augment names its device (``device=dev``, or
    ``device=gen.device`` for a CPU generator's draw); ``_like`` variants follow their input."""
    found = []
    for sub in ("ltbench/method", "ltbench/augment"):
        for name in sorted(os.listdir(os.path.join(ROOT, sub))):
            if name.endswith(".py"):
                rel = f"{sub}/{name}"
                found += [(rel, line, code) for line, code in _factory_calls_without_device(os.path.join(ROOT, rel)) if (rel, code) not in ALLOWED]
    assert not found, "factory calls without device= (add device=..., or allow-list them with a reason):\n" + "\n".join(f"{f}:{n}: {c}" for f, n, c in found)


def test_the_ast_check_sees_a_factory_without_device(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("import torch\nx = torch.zeros(3)\ny = torch.zeros(3, device=d)\nz = torch.zeros_like(x)\nw = torch.randn(2, generator=g)\n")
    assert [line for line, _ in _factory_calls_without_device(str(p))] == [2, 5]
