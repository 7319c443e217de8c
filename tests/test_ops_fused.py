"""The fused kernels of ltbench._C against their pure-PyTorch references."""

import pytest
import torch

from ltbench import ops

pytestmark = pytest.mark.skipif(not (ops.extension_available() and hasattr(torch.ops.ltbench, "mask_fuse")), reason="fused ops not built")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
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
    if diff.any():  # only where u sits within float rounding of a cumulative-probability step
        cdf = torch.softmax(logits.double(), 1).cumsum(1)
        b, h, w = diff.nonzero()[0].tolist()
        assert (cdf[b, :, h, w] - u[b, h, w].double()).abs().min() < 1e-5


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


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    cpu = _inputs(b=4, h=16, w=16, dtype=dtype)
    gpu = [t.cuda() for t in cpu]
    logits, u, zt, zh, ms, mg, mr = cpu
    diff = (L.channel_sample(*gpu[:2]).cpu() != L.channel_sample(logits, u)).float().mean()
    assert diff < (1e-3 if dtype != torch.float64 else 1e-9)
    idx = L.channel_sample(logits, u)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(L.imitation_bce(gpu[0], idx.cuda()).cpu(), L.imitation_bce(logits, idx), rtol=tol, atol=tol)
    g = torch.ones((), dtype=dtype)
    torch.testing.assert_close(L.imitation_bce_backward(g.cuda(), gpu[0], idx.cuda()).cpu(), L.imitation_bce_backward(g, logits, idx), rtol=tol, atol=tol)
    assert torch.equal(L.mask_fuse(*gpu[2:]).cpu(), L.mask_fuse(zt, zh, ms, mg, mr))
