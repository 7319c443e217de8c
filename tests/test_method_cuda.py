"""The method on a GPU (marker ``cuda``): iterated learning, CAMs, partner search, fusion and the
augmenter with ``device="cuda"``, against the same calls on the CPU, and the fused CUDA kernels
on that path. The CPU reference runs in float32 and cuDNN's TF32 is switched off, so the two
devices differ by float rounding only (the random draws come from the same CPU generators)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from ltbench import ops

pytestmark = pytest.mark.cuda
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES, HEAD, TAIL = ["h0", "h1", "h2", "t0"], ["h0", "h1", "h2"], ["t0"]


@pytest.fixture(autouse=True)
def exact_cuda_math():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _expected_backend() -> str:
    if os.environ.get("LTBENCH_EXPECT_CUDA_BUILD") == "1":
        return "fused-cuda"
    return "fused-cuda" if ops.fused_on("cuda") else "reference"


def _data(n=256):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 4, 16, 16, generator=g)
    y = (torch.rand(n, 4, generator=g) < 0.3).float()
    y[:24, 3] = 1
    y[24:, 3] = 0
    z[y[:, 0] == 1, :, 4:8, 4:8] += 1.5
    return z, y


def _ds(z, y):
    return TensorDataset(z, y, torch.arange(len(z)))


def _cfg():
    from ltbench.method.il import ILConfig

    return ILConfig(sparse_channels=16, generations=2, ngf=8, max_depth=3, batch_size=64, lr=1e-3, bn_recalibration=128)


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """The same IL fit on the CPU and on the GPU (float32), the GPU one watched at the ops."""
    from ltbench.method import il

    z, y = _data()
    seen = []
    real_sample, real_bce = il.ops.channel_sample, il.ops.imitation_bce

    def sample(logits, u):
        seen.append(("channel_sample", logits.device.type, u.device.type, logits.dtype))
        return real_sample(logits, u)

    def bce(logits, idx):
        seen.append(("imitation_bce", logits.device.type, idx.device.type, logits.dtype))
        return real_bce(logits, idx)

    out = {d: str(tmp_path_factory.mktemp(f"il-{d}")) for d in ("cpu", "cuda", "bf16")}
    cpu = il.train_il(_ds(z, y), _ds(z[:64], y[:64]), _cfg(), out["cpu"], progress=False, device="cpu")
    il.ops.channel_sample, il.ops.imitation_bce = sample, bce
    try:
        gpu = il.train_il(_ds(z, y), _ds(z[:64], y[:64]), _cfg(), out["cuda"], progress=False, device="cuda", precision="fp32")
    finally:
        il.ops.channel_sample, il.ops.imitation_bce = real_sample, real_bce
    return cpu, gpu, out, seen


def test_iterated_learning_runs_on_the_gpu_through_the_fused_kernels(fits):
    cpu, gpu, out, seen = fits
    assert all(p.device.type == "cuda" for p in gpu.parameters()) and all(b.device.type == "cuda" for b in gpu.buffers())
    assert gpu.student.inc[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert seen and all(d1 == d2 == "cuda" and dt == torch.float32 for _, d1, d2, dt in seen)
    meta = json.load(open(os.path.join(out["cuda"], "config.json")))
    assert meta["ops_backend"] == _expected_backend() and meta["device"].startswith("cuda") and meta["autocast"] == "float32"
    a, b = ([json.loads(x) for x in open(os.path.join(out[d], "log.jsonl"))] for d in ("cpu", "cuda"))
    for ga, gb in zip(a, b):  # the same run up to float rounding: same init, batches, uniforms
        for phase in ("interaction", "imitation"):
            if phase in ga:
                assert abs(ga[phase]["loss"] - gb[phase]["loss"]) <= 2e-2 * abs(ga[phase]["loss"]), (phase, ga, gb)


def test_iterated_learning_under_the_default_bf16_autocast(fits, tmp_path):
    from ltbench.method.il import train_il

    z, y = _data()
    model = train_il(_ds(z, y), None, _cfg(), str(tmp_path), progress=False, device="cuda")
    meta = json.load(open(tmp_path / "config.json"))
    assert meta["autocast"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    log = [json.loads(x) for x in open(tmp_path / "log.jsonl")]
    assert all(np.isfinite(e["interaction"]["loss"]) for e in log) and np.isfinite(log[0]["imitation"]["loss"])
    ref = [json.loads(x) for x in open(os.path.join(fits[2]["cpu"], "log.jsonl"))]
    assert abs(log[-1]["interaction"]["loss"] - ref[-1]["interaction"]["loss"]) <= 0.1 * ref[-1]["interaction"]["loss"]


def test_load_il_and_cams_on_the_gpu_match_the_cpu(fits, tmp_path):
    from ltbench.method.cam import compute_cams
    from ltbench.method.il import load_il

    _, _, out, _ = fits
    z, y = _data()
    gpu = load_il(out["cpu"], device="cuda")
    assert next(gpu.parameters()).device.type == "cuda"
    for method, layers in (("gradcam++", "multi"), ("eigencam", "last")):
        cg, sg = compute_cams(gpu, _ds(z, y), str(tmp_path / f"g-{method}"), batch_size=100, progress=False, method=method, layers=layers, device="cuda")
        cc, sc = compute_cams(load_il(out["cpu"], device="cpu"), _ds(z, y), str(tmp_path / f"c-{method}"), batch_size=100, progress=False, method=method, layers=layers, device="cpu")
        np.testing.assert_allclose(np.asarray(sg), np.asarray(sc), atol=1e-4)
        diff = np.abs(np.asarray(cg, np.float32) - np.asarray(cc, np.float32))
        assert np.nanmean(diff) < 1e-2, (method, np.nanmean(diff))


def test_partner_search_and_fusion_on_the_gpu_match_the_cpu(fits, monkeypatch):
    """Same partners and thresholds, the same masks M^S, M^G, M^R fused (drawn on the CPU), the
    same labels; the decoded latents equal to float rounding."""
    from ltbench.augment.fsa_il import generate_fusions
    from ltbench.method.fusion import FusionConfig, knn_rows
    from ltbench.method.il import load_il

    _, _, out, _ = fits
    z, y = _data()
    g = torch.Generator().manual_seed(1)
    cams, scores = torch.rand(len(z), 16, 16, generator=g).numpy(), torch.rand(len(z), 4, generator=g).numpy()
    assert np.array_equal(knn_rows(cams[:9].reshape(9, -1), cams, np.arange(30, 256), 5, chunk=50, device="cuda"), knn_rows(cams[:9].reshape(9, -1), cams, np.arange(30, 256), 5, chunk=50))
    masks = {}
    real = ops.mask_fuse

    def spy(z_t, z_h, m_s, m_g, m_r, out=None):
        masks.setdefault(z_t.device.type, []).append(torch.stack([m_s, m_g, m_r]).cpu())
        return real(z_t, z_h, m_s, m_g, m_r, out=out)

    monkeypatch.setattr(ops, "mask_fuse", spy)
    for fusion in (dict(), dict(p_mode="sampled", masks="random", partner_rule="code", thresholds="sampled"), dict(decoder="train-batch2", partner_rule="class-confusion")):
        cfg = FusionConfig(n_per_class=11, batch_size=4, **fusion)
        masks.clear()
        res = {}
        for dev in ("cpu", "cuda"):

            class R:
                pass

            rec = R()
            res[dev] = (*generate_fusions(load_il(out["cpu"], device=dev), _ds(z, y), cams, scores, CLASSES, HEAD, TAIL, cfg, record=rec, device=dev), rec)
        (zc, yc, rc), (zg, yg, rg) = res["cpu"], res["cuda"]
        assert zg.device.type == "cpu" and np.array_equal(rc.partners_, rg.partners_) and rc.thresholds_ == rg.thresholds_ and np.array_equal(yc, yg)
        assert all(torch.equal(a, b) for a, b in zip(masks["cpu"], masks["cuda"]))
        torch.testing.assert_close(zg, zc, rtol=1e-3, atol=1e-3)


def test_the_augmenter_on_the_gpu(tmp_path):
    from ltbench.augment import make_augmenter
    from ltbench.method.fusion import FusionConfig

    z, y = _data()
    aug = make_augmenter("fsa-il", classes=CLASSES, head=HEAD, tail=TAIL, il=_cfg(), fusion=FusionConfig(n_per_class=6), work_dir=str(tmp_path), device="cuda")
    X, Y = aug.fit_resample(z, y.numpy().astype(np.uint8))
    assert X.device.type == "cpu" and X.shape == (262, 4, 16, 16) and torch.isfinite(X).all() and Y.shape == (262, 4)
    assert aug.device_.startswith("cuda") and aug.ops_backend_ == _expected_backend()


def test_the_classifier_harness_on_the_gpu():
    from ltbench.eval.classifier import ClassifierConfig, predict, train_classifier

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 32, 32, generator=g) * 255).to(torch.uint8).numpy()
    yy = (torch.rand(40, 3, generator=g) < 0.4).numpy().astype(np.uint8)
    cfg = ClassifierConfig(input_size=32, steps=2, warm_steps=1, batch_size=8)
    net = train_classifier(x, yy, cfg, seed=0, device="cuda")
    assert next(net.parameters()).device.type == "cuda"
    p = predict(net, x[:10], cfg, device="cuda")
    assert p.shape == (10, 3) and np.isfinite(p).all()


@pytest.mark.skipif(torch.cuda.device_count() < 2 or shutil.which("torchrun") is None, reason="needs two GPUs and torchrun")
def test_iterated_learning_over_nccl_follows_one_process(tmp_path):
    """torchrun on two GPUs: the "cpu:gloo,cuda:nccl" group carries the gradients (NCCL) and
    the loss sums (gloo); the losses follow one GPU process's run as the gloo test's do."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("LTBENCH_DIST_BACKEND", None)
    worker = os.path.join(ROOT, "tests", "dist_worker.py")
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    for cmd in ([sys.executable, worker, "il", one], ["torchrun", "--standalone", "--nproc_per_node=2", worker, "il", two]):
        r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-4000:]
    a = torch.load(os.path.join(one, "il-rank0.pt"), weights_only=False)
    b = torch.load(os.path.join(two, "il-rank0.pt"), weights_only=False)
    c = torch.load(os.path.join(two, "il-rank1.pt"), weights_only=False)
    assert b["backend"] == "cpu:gloo,cuda:nccl"
    for k, v in b["state"].items():
        assert torch.allclose(v.float(), c["state"][k].float(), atol=1e-5), k
    for g1, g2 in zip(a["log"], b["log"]):
        for phase in ("interaction", "imitation"):
            if phase in g1:
                assert abs(g1[phase]["loss"] - g2[phase]["loss"]) <= 0.01 * abs(g1[phase]["loss"]), (phase, g1, g2)
