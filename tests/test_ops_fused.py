"""The fused kernels of ltbench._C against their pure-PyTorch references."""

import pytest
import torch

from ltbench import ops

pytestmark = pytest.mark.skipif(not (ops.extension_available() and hasattr(torch.ops.ltbench, "mask_fuse")), reason="fused ops not built")
L = torch.ops.ltbench


def _inputs(b=3, c=64, h=8, w=9, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, c, h, w, generator=g, dtype=torch.float64) * 2).to(dtype)
    u = torch.rand(b, h, w, generator=g, dtype=torch.float64).to(dtype)
    masks = [torch.rand(b, h, w, generator=g) < 0.5 for _ in range(3)]
    z = [torch.randn(b, c, h, w, generator=g, dtype=torch.float64).to(dtype) for _ in range(2)]
    return [t.to(device) for t in (logits, u, *z, *masks)]


# ---- channel_sample -------------------------------------------------------------------------


def test_channel_sample_exact_in_float64():
    logits, u, *_ = _inputs(b=4, h=16, w=16, dtype=torch.float64)
    assert torch.equal(L.channel_sample(logits, u), ops.channel_sample_reference(logits, u))


def test_channel_sample_float32_agrees_but_at_rounding_boundaries():
    logits, u, *_ = _inputs(b=8, h=32, w=32)
    got, ref = L.channel_sample(logits, u), ops.channel_sample_reference(logits, u)
    diff = got != ref
    assert diff.float().mean() < 1e-3
    # every disagreement, not just the first: u within float rounding of a step of the CDF
    cdf = torch.softmax(logits.double(), 1).cumsum(1)
    for b, h, w in diff.nonzero().tolist():
        assert (cdf[b, :, h, w] - u[b, h, w].double()).abs().min() < 1e-5, (b, h, w)


def test_channel_sample_edge_inputs():
    logits, u, *_ = _inputs(dtype=torch.float64)
    nc = logits.transpose(2, 3).contiguous().transpose(2, 3)  # non-contiguous view
    assert not nc.is_contiguous() and torch.equal(L.channel_sample(nc, u), ops.channel_sample_reference(nc, u))
    assert L.channel_sample(torch.empty(0, 5, 4, 4), torch.empty(0, 4, 4)).shape == (0, 4, 4)
    one = torch.tensor([0.0, 0.0, -float("inf")]).view(1, 3, 1, 1)
    assert L.channel_sample(one, torch.ones(1, 1, 1)).item() == 1  # u beyond the total: last p > 0
    with pytest.raises(RuntimeError, match="u must be"):
        L.channel_sample(logits, u[:, :2])
    with pytest.raises(ValueError, match="u must be"):
        ops.channel_sample(logits, u[:, :2])
    with pytest.raises(RuntimeError, match="logits must be floating"):
        L.channel_sample(logits.long(), u)


def test_channel_sample_opcheck():
    logits, u, *_ = _inputs(b=2, c=5, h=3, w=4)
    torch.library.opcheck(L.channel_sample.default, (logits, u))


# ---- imitation_bce --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_imitation_bce_matches_reference(dtype, tol):
    logits, u, *_ = _inputs(dtype=dtype)
    idx = ops.channel_sample_reference(logits, u)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    la, lb = ops.imitation_bce(a, idx), ops.imitation_bce_reference(b, idx)
    torch.testing.assert_close(la, lb, rtol=tol, atol=tol)
    la.backward()
    lb.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=10 * tol, atol=tol)


def test_imitation_bce_gradcheck_and_clamp():
    logits, u, *_ = _inputs(b=2, c=6, h=3, w=3, dtype=torch.float64)
    idx = torch.randint(0, 6, (2, 3, 3))
    assert torch.autograd.gradcheck(lambda x: ops.imitation_bce(x, idx), (logits.requires_grad_(True),))
    saturated = torch.tensor([[[[300.0]], [[-300.0]]]], dtype=torch.float64, requires_grad=True)
    loss = ops.imitation_bce(saturated, torch.tensor([[[1]]]))
    ref = ops.imitation_bce_reference(saturated.detach().requires_grad_(True), torch.tensor([[[1]]]))
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert torch.isfinite(saturated.grad).all()


def test_imitation_bce_opcheck_and_errors():
    logits, u, *_ = _inputs(b=2, c=5, h=3, w=4, dtype=torch.float64)
    idx = torch.randint(0, 5, (2, 3, 4))
    torch.library.opcheck(L.imitation_bce.default, (logits.requires_grad_(True), idx))
    with pytest.raises(RuntimeError, match="idx must be in"):
        L.imitation_bce(logits.detach(), torch.full((2, 3, 4), 7))
    with pytest.raises(RuntimeError, match="idx must be \\[B, H, W\\]"):
        L.imitation_bce(logits.detach(), idx[:, :1])
    assert torch.isnan(L.imitation_bce(torch.empty(0, 5, 2, 2), torch.empty(0, 2, 2, dtype=torch.long)))  # like BCELoss


# ---- mask_fuse ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_mask_fuse_is_exactly_the_select(dtype):
    _, _, zt, zh, ms, mg, mr = _inputs(dtype=dtype)
    assert torch.equal(L.mask_fuse(zt, zh, ms, mg, mr), ops.mask_fuse_reference(zt, zh, ms, mg, mr))
    # float / uint8 masks read as nonzero = 1
    assert torch.equal(L.mask_fuse(zt, zh, ms.float(), mg.to(torch.uint8), mr.double()), ops.mask_fuse_reference(zt, zh, ms, mg, mr))


def test_mask_fuse_out_variant():
    _, _, zt, zh, ms, mg, mr = _inputs()
    out = torch.empty_like(zt)
    res = ops.mask_fuse(zt, zh, ms, mg, mr, out=out)
    assert res.data_ptr() == out.data_ptr() and torch.equal(out, ops.mask_fuse_reference(zt, zh, ms, mg, mr))
    torch.library.opcheck(L.mask_fuse.out, (zt, zh, ms, mg, mr), {"out": torch.empty_like(zt)}, test_utils=("test_schema", "test_faketensor"))
    with pytest.raises(RuntimeError, match="out must be"):
        L.mask_fuse.out(zt, zh, ms, mg, mr, out=torch.empty(1))


def test_mask_fuse_gradients():
    _, _, zt, zh, ms, mg, mr = _inputs(b=2, c=4, h=3, w=5, dtype=torch.float64)
    zt.requires_grad_(True)
    zh.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ops.mask_fuse(a, b, ms, mg, mr), (zt, zh))
    torch.library.opcheck(L.mask_fuse.default, (zt, zh, ms, mg, mr))


def test_backward_ops_check_their_arguments():
    """The backward ops are callable on their own: masks of another shape (the kernels index them
    by grad's) and a gradient that is not a scalar are errors naming the argument."""
    _, _, zt, _, ms, mg, mr = _inputs()
    with pytest.raises(RuntimeError, match="m_g must be \\[B, H, W\\]"):
        L.mask_fuse_backward(zt, ms, mg[:, :2], mr)
    with pytest.raises(RuntimeError, match="grad must be floating"):
        L.mask_fuse_backward(zt.long(), ms, mg, mr)
    logits, u, *_ = _inputs(b=2, c=5, h=3, w=4)
    idx = torch.randint(0, 5, (2, 3, 4))
    with pytest.raises(RuntimeError, match="grad must be a floating scalar"):
        L.imitation_bce_backward(torch.ones(2), logits, idx)


def test_mask_fuse_edge_inputs():
    _, _, zt, zh, ms, mg, mr = _inputs()
    nc = zt.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    assert torch.equal(L.mask_fuse(nc, zh, ms, mg, mr), ops.mask_fuse_reference(nc, zh, ms, mg, mr))
    e = torch.empty(0, 4, 3, 3)
    assert L.mask_fuse(e, e, *(torch.empty(0, 3, 3, dtype=torch.bool),) * 3).shape == (0, 4, 3, 3)
    with pytest.raises(RuntimeError, match="m_g must be"):
        L.mask_fuse(zt, zh, ms, mg[:, :2], mr)
    with pytest.raises(RuntimeError, match="share a floating dtype"):
        L.mask_fuse(zt, zh.double(), ms, mg, mr)


# ---- compile, CUDA --------------------------------------------------------------------------


def test_ops_compile_fullgraph():
    logits, u, zt, zh, ms, mg, mr = _inputs()

    @torch.compile(fullgraph=True, backend="eager")
    def step(logits, u, zt, zh, ms, mg, mr):
        idx = ops.channel_sample(logits, u)
        return ops.imitation_bce(logits, idx), ops.mask_fuse(zt, zh, ms, mg, mr)

    loss, fused = step(logits, u, zt, zh, ms, mg, mr)
    torch.testing.assert_close(loss, ops.imitation_bce_reference(logits, ops.channel_sample(logits, u)))
    assert torch.equal(fused, ops.mask_fuse_reference(zt, zh, ms, mg, mr))


NAN, INF = float("nan"), float("inf")
ALL_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def _poisoned_logits(dtype):
    """Logits [2, 4, 3, 3] with, in image 0: a NaN (pixel 0,0), a +inf (0,1), an all -inf
    pixel (0,2) and a finite pixel holding one -inf (1,0); image 1 all finite."""
    logits = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    logits[0, 1, 0, 0] = NAN
    logits[0, 2, 0, 1] = INF
    logits[0, :, 0, 2] = -INF
    logits[0, 3, 1, 0] = -INF
    return logits


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_imitation_bce_propagates_nan_and_inf(dtype, impl):
    """A diverged student must give a NaN loss, never a plausible finite one (the fast log once
    turned an all-NaN batch into -11.14), with NaN gradients exactly on the poisoned pixels."""
    f = (lambda x, k: L.imitation_bce(x, k)) if impl == "fused" else ops.imitation_bce_reference
    idx = torch.zeros(2, 3, 3, dtype=torch.long)
    for poison in [(0, 0), (0, 1), (0, 2)]:
        logits = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(2)).to(dtype)
        bad = _poisoned_logits(dtype)[0, :, poison[0], poison[1]]
        logits[0, :, poison[0], poison[1]] = bad
        x = logits.clone().requires_grad_(True)
        loss = f(x, idx)
        assert torch.isnan(loss), (poison, loss)
        loss.backward()
        nan_px = torch.isnan(x.grad).any(1)
        expected = torch.zeros(2, 3, 3, dtype=torch.bool)
        expected[0, poison[0], poison[1]] = True
        assert torch.equal(nan_px, expected), poison
    every = torch.full((2, 4, 3, 3), NAN, dtype=dtype)
    assert torch.isnan(f(every, idx))
    # a -inf among finite logits is an ordinary input: finite loss, finite gradient
    finite = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(3)).to(dtype)
    finite[0, 3, 1, 0] = -INF
    x = finite.clone().requires_grad_(True)
    loss = f(x, idx)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_imitation_bce_backends_agree_on_non_finite_inputs(dtype):
    logits = _poisoned_logits(dtype)
    idx = torch.randint(0, 4, (2, 3, 3), generator=torch.Generator().manual_seed(0))
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    la, lb = L.imitation_bce(a, idx), ops.imitation_bce_reference(b, idx)
    assert torch.isnan(la) and torch.isnan(lb)
    la.backward()
    lb.backward()
    assert torch.equal(torch.isnan(a.grad), torch.isnan(b.grad))
    tol = {torch.float64: 1e-9, torch.float32: 1e-5}.get(dtype, 1e-2)
    ok = ~torch.isnan(b.grad)
    torch.testing.assert_close(a.grad[ok], b.grad[ok], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_channel_sample_backends_agree_on_edge_cases(dtype):
    """Documented edge cases give the same draw on both backends: u >= 1, u < 0 and NaN u;
    NaN / +inf logits and all -inf pixels (NaN probabilities: channel 0)."""
    logits = _poisoned_logits(dtype)
    u = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(0)).to(dtype)
    u[1, 0, 0], u[1, 0, 1], u[1, 0, 2], u[1, 1, 1] = NAN, 1.0, -0.5, INF
    got, ref = L.channel_sample(logits, u), ops.channel_sample_reference(logits, u)
    assert torch.equal(got, ref)
    assert got[0, 0, 0] == got[0, 0, 1] == got[0, 0, 2] == 0  # NaN probabilities
    assert got[1, 0, 1] == got[1, 0, 0] == got[1, 1, 1] == 3 and got[1, 0, 2] == 0  # u >= total / NaN: last p > 0


@pytest.mark.parametrize("fused", [True, False])
def test_mask_fuse_out_must_match_on_both_backends(monkeypatch, fused):
    from ltbench.ops import method_ops

    monkeypatch.setattr(method_ops, "_FUSED", fused)
    _, _, zt, zh, ms, mg, mr = _inputs()
    for bad in (torch.empty_like(zt, dtype=torch.float64), torch.empty_like(zt, dtype=torch.float16), torch.empty(zt.shape[0], zt.shape[1], 9, 8).transpose(2, 3), torch.empty(1)):
        with pytest.raises(ValueError, match="out must be a contiguous torch.float32"):
            ops.mask_fuse(zt, zh, ms, mg, mr, out=bad)
    out = torch.empty_like(zt)
    assert ops.mask_fuse(zt, zh, ms, mg, mr, out=out) is out and torch.equal(out, ops.mask_fuse_reference(zt, zh, ms, mg, mr))


def test_baseline_and_avx2_kernels_give_the_same_bits(tmp_path):
    """The CPU kernels are compiled twice (baseline and AVX2 + FMA, chosen at run time); both
    copies must compute identical results, so a cluster of mixed nodes gets one answer."""
    import subprocess
    import sys

    if ops.cpu_isa() != "avx2":
        pytest.skip("this CPU runs the baseline copy only")
    script = (
        "import sys, torch\n"
        "from ltbench import ops\n"
        "L = torch.ops.ltbench\n"
        "g = torch.Generator().manual_seed(0)\n"
        "out = {'isa': ops.cpu_isa()}\n"
        "for dt in (torch.float32, torch.float64, torch.bfloat16, torch.float16):\n"
        "    l = torch.randn(3, 64, 17, 19, generator=g).to(dt) * 3\n"
        "    u = torch.rand(3, 17, 19, generator=g).to(dt)\n"
        "    k = torch.randint(0, 64, (3, 17, 19), generator=g)\n"
        "    z = torch.randn(2, 3, 64, 17, 19, generator=g).to(dt)\n"
        "    m = [torch.rand(3, 17, 19, generator=g) < 0.5 for _ in range(3)]\n"
        "    out[str(dt)] = (L.channel_sample(l, u), L.imitation_bce(l, k), L.imitation_bce_backward(torch.tensor(1.0), l, k), L.mask_fuse(z[0], z[1], *m), *L.mask_fuse_backward(z[0], *m))\n"
        "torch.save(out, sys.argv[1])\n"
    )
    res = {}
    for isa in ("auto", "base"):
        env = {k: v for k, v in __import__("os").environ.items() if k != "LTBENCH_CPU_ISA"}
        if isa == "base":
            env["LTBENCH_CPU_ISA"] = "base"
        path = tmp_path / f"{isa}.pt"
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, timeout=600)
        res[isa] = torch.load(path)
    assert res["auto"]["isa"] == "avx2" and res["base"]["isa"] == "base"
    for key, tensors in res["auto"].items():
        if key != "isa":
            for a, b in zip(tensors, res["base"][key]):
                assert torch.equal(a, b), key


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    """Both backends call the same per-element functions (one copy of the math, no FMA
    contraction on either side), so draws, selects and per-element gradients agree bit for bit
    in float32/bfloat16; float64 uses the C library's and the device's exp/log (1 ulp apart)."""
    cpu = _inputs(b=4, h=16, w=16, dtype=dtype)
    gpu = [t.cuda() for t in cpu]
    logits, u, zt, zh, ms, mg, mr = cpu
    if dtype == torch.float64:
        assert (L.channel_sample(*gpu[:2]).cpu() != L.channel_sample(logits, u)).float().mean() < 1e-9
    else:
        assert torch.equal(L.channel_sample(*gpu[:2]).cpu(), L.channel_sample(logits, u))
    idx = L.channel_sample(logits, u)
    g = torch.ones((), dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 0.0
    torch.testing.assert_close(L.imitation_bce_backward(g.cuda(), gpu[0], idx.cuda()).cpu(), L.imitation_bce_backward(g, logits, idx), rtol=tol, atol=tol)
    # the loss sums per-block partials in another order: equal to rounding of the sum
    torch.testing.assert_close(L.imitation_bce(gpu[0], idx.cuda()).cpu(), L.imitation_bce(logits, idx), rtol=1e-6, atol=1e-6)
    assert torch.equal(L.mask_fuse(*gpu[2:]).cpu(), L.mask_fuse(zt, zh, ms, mg, mr))
    gt, gh = L.mask_fuse_backward(gpu[2], *gpu[4:])
    ct, ch = L.mask_fuse_backward(zt, ms, mg, mr)
    assert torch.equal(gt.cpu(), ct) and torch.equal(gh.cpu(), ch)
    # edge cases: the documented NaN/inf behaviour on the GPU too
    for dt in ALL_DTYPES:
        pl = _poisoned_logits(dt)
        uu = torch.rand(2, 3, 3).to(dt)
        uu[1, 0, 0] = NAN
        assert torch.equal(L.channel_sample(pl.cuda(), uu.cuda()).cpu(), L.channel_sample(pl, uu))
        assert torch.isnan(L.imitation_bce(pl.cuda(), torch.zeros(2, 3, 3, dtype=torch.long, device="cuda")))
