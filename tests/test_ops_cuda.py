"""The CUDA kernels (csrc/ops/*/*_cuda.cu) on a GPU: what a GPU run needs and the CPU tests
cannot reach. Every test carries the ``cuda`` marker (``pytest -m cuda``; skipped without a
GPU by tests/conftest.py).

What only the .cu files have, and which test reaches it:

* grid-stride loops: ``grid_for`` caps a launch at 32 blocks of 256 threads per SM, so inputs
  with more elements (pixels for channel_sample and imitation_bce) than that wrap every loop
  at least twice, with a ragged last pass (``*_wraps_the_grid*``);
* the shared-memory block reduction of imitation_bce's forward: pixels of known loss, one of
  them different at the very last index, on a wrapping grid and on a grid smaller than a
  block (``test_imitation_bce_reduction_*``);
* mask_fuse's vectorised path (16-byte loads, fp32, H*W % 4 == 0, aligned) against its scalar
  path (H*W % 4 != 0, a misaligned storage offset, 16/64-bit dtypes);
* indexing of non-contiguous and channels-last inputs (made contiguous on the device), masks
  of other dtypes, ``out=``, the device guard (a tensor on a GPU other than the current one)
  and the current stream (a side stream, CUDA-graph capture);
* autograd through ``ltbench.ops`` on CUDA tensors, float64 gradcheck, opcheck.

Bit equality: draws, selects and per-element gradients equal the CPU kernels' bit for bit in
float32, float16 and bfloat16 (one copy of the math, no FMA contraction on either side);
float64 uses the C library's and the device's exp/log and is compared to rounding. Losses are
sums in another order: equal to rounding.
"""

import math
import os

import pytest
import torch

from ltbench import ops

pytestmark = pytest.mark.cuda
L = torch.ops.ltbench
LOW = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(scope="module", autouse=True)
def cuda_kernels():
    if not ops.fused_on("cuda"):
        msg = "ltbench._C has no CUDA kernels: rebuild with FORCE_CUDA=1 pip install --no-build-isolation -e ."
        if os.environ.get("LTBENCH_EXPECT_CUDA_BUILD") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    assert ops.backend_for("cuda") == "fused-cuda"


def grid_threads() -> int:
    """Threads of the largest launch ``grid_for`` makes on this GPU (csrc/common/cuda_launch.cuh:
    kThreads = 256, at most 32 blocks per SM)."""
    return torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count * 32 * 256


def wrapping_hw(batch: int, passes: float = 2.3, plane: str = "any") -> tuple[int, int]:
    """(H, W) with batch * H * W > passes x the grid's threads (every grid-stride loop runs at
    least twice and ends on a partial pass). ``plane``: "mult4" makes H * W % 4 == 0 (mask_fuse's
    vectorised path), "odd" makes H * W odd (its scalar path)."""
    need = math.ceil(passes * grid_threads() / batch)
    if plane == "mult4":
        h = 96
        return h, 4 * math.ceil(need / (4 * h))
    h = 97
    w = math.ceil(need / h)
    if plane == "odd":
        w += 1 - w % 2
    return h, w


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _logits(b, c, h, w, dtype, seed=0):
    return (torch.randn(b, c, h, w, generator=_g(seed), dtype=torch.float64) * 2).to(dtype)


def _masks(b, h, w, seed=1):
    g = _g(seed)
    return [torch.rand(b, h, w, generator=g) < 0.5 for _ in range(3)]


# ---- channel_sample -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", LOW + [torch.float64])
def test_channel_sample_wraps_the_grid_and_matches_the_cpu_kernel(dtype):
    b, c = 2, 8
    h, w = wrapping_hw(b)
    assert b * h * w > 2 * grid_threads()
    logits = _logits(b, c, h, w, dtype)
    u = torch.rand(b, h, w, generator=_g(5), dtype=torch.float64).to(dtype)
    got = L.channel_sample(logits.cuda(), u.cuda()).cpu()
    cpu = L.channel_sample(logits, u)
    if dtype == torch.float64:
        assert (got != cpu).float().mean() < 1e-6
    else:
        assert torch.equal(got, cpu)
    assert (got != ops.channel_sample_reference(logits, u)).float().mean() < 2e-3  # rounding at CDF steps only
    assert got[-1, -1, -1] == cpu[-1, -1, -1]  # the last pixel: the final pass of the last thread


def test_channel_sample_small_grids_and_strided_inputs():
    for b, c, h, w in [(1, 3, 1, 5), (3, 64, 7, 9), (0, 5, 4, 4)]:
        logits, u = _logits(b, c, h, w, torch.float32), torch.rand(b, h, w, generator=_g(2))
        assert torch.equal(L.channel_sample(logits.cuda(), u.cuda()).cpu(), L.channel_sample(logits, u))
    logits, u = _logits(4, 64, 16, 12, torch.float32).cuda(), torch.rand(4, 16, 12, generator=_g(3)).cuda()
    want = L.channel_sample(logits, u)
    for strided in (logits.to(memory_format=torch.channels_last), logits.transpose(2, 3).contiguous().transpose(2, 3)):
        assert not strided.is_contiguous() and torch.equal(ops.channel_sample(strided, u), want)
    assert torch.equal(ops.channel_sample(logits, u.transpose(1, 2).contiguous().transpose(1, 2)), want)
    with pytest.raises(ValueError, match="u is on cpu"):
        ops.channel_sample(logits, u.cpu())
    with pytest.raises(RuntimeError, match="same device"):
        L.channel_sample(logits, u.cpu())


# ---- imitation_bce --------------------------------------------------------------------------


def _uniform_pixel_loss(c: int) -> float:
    """sum over channels of BCE(1/c, one_hot(0)) for one pixel of all-equal logits."""
    return -((c - 1) * math.log1p(-1 / c) + math.log(1 / c))


@pytest.mark.parametrize("pixels", ["wrapping", "one-block", "few"])
def test_imitation_bce_reduction_counts_every_pixel_once(pixels):
    """Every thread's partial sum reaches the loss exactly once (float64: the block reduction and
    the sum over blocks are exact to 1e-12 here): all pixels have the same loss but the last,
    which differs, so a dropped, doubled or misplaced partial changes the mean."""
    c = 4
    if pixels == "wrapping":
        h, w = wrapping_hw(2)
        b = 2
    elif pixels == "one-block":
        b, h, w = 1, 16, 16  # exactly one block of 256
    else:
        b, h, w = 1, 1, 7  # 7 busy threads of 256
    logits = torch.zeros(b, c, h, w, dtype=torch.float64)
    logits[-1, 0, -1, -1] = 3.0
    idx = torch.zeros(b, h, w, dtype=torch.long)
    last = float(ops.imitation_bce_reference(logits[-1:, :, -1:, -1:], idx[-1:, -1:, -1:])) * c
    n = b * h * w
    expected = ((n - 1) * _uniform_pixel_loss(c) + last) / (n * c)
    got = float(L.imitation_bce(logits.cuda(), idx.cuda()))
    assert abs(got - expected) <= 1e-12 * expected, (got, expected)


@pytest.mark.parametrize("dtype", LOW + [torch.float64])
def test_imitation_bce_wraps_the_grid_and_matches_the_cpu_kernel(dtype):
    b, c = 2, 8
    h, w = wrapping_hw(b)
    logits = _logits(b, c, h, w, dtype)
    idx = torch.randint(0, c, (b, h, w), generator=_g(4))
    gl, gi = logits.cuda(), idx.cuda()
    one = torch.ones((), dtype=dtype)
    tol = {torch.float64: 1e-12, torch.float32: 1e-6}.get(dtype, 1e-2)
    torch.testing.assert_close(L.imitation_bce(gl, gi).cpu(), L.imitation_bce(logits, idx), rtol=tol, atol=tol)
    grad_gpu, grad_cpu = L.imitation_bce_backward(one.cuda(), gl, gi).cpu(), L.imitation_bce_backward(one, logits, idx)
    if dtype == torch.float64:
        torch.testing.assert_close(grad_gpu, grad_cpu, rtol=1e-12, atol=1e-15)
    else:
        assert torch.equal(grad_gpu, grad_cpu)


def test_imitation_bce_autograd_on_cuda():
    logits = _logits(3, 64, 9, 11, torch.float32)
    idx = ops.channel_sample_reference(logits, torch.rand(3, 9, 11, generator=_g(6)))
    b = logits.clone().requires_grad_(True)
    c = logits.clone().requires_grad_(True)
    a = logits.cuda().requires_grad_(True)
    la, lb, lc = ops.imitation_bce(a, idx.cuda()), ops.imitation_bce_reference(b, idx), ops.imitation_bce(c, idx)
    (la * 2).backward()  # an upstream gradient other than 1 reaches the kernel's scale
    (lb * 2).backward()
    (lc * 2).backward()
    torch.testing.assert_close(la.cpu(), lb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=1e-4, atol=2e-5)
    assert torch.equal(a.grad.cpu(), c.grad)  # the CPU kernel's gradient, bit for bit
    x = _logits(2, 5, 3, 4, torch.float64).cuda().requires_grad_(True)
    k = torch.randint(0, 5, (2, 3, 4), generator=_g(7)).cuda()
    assert torch.autograd.gradcheck(lambda t: ops.imitation_bce(t, k), (x,))
    torch.library.opcheck(L.imitation_bce.default, (x, k))


def test_imitation_bce_errors_and_edges_on_cuda():
    logits = _logits(2, 5, 3, 4, torch.float32).cuda()
    with pytest.raises(RuntimeError, match="idx must be in"):
        L.imitation_bce(logits, torch.full((2, 3, 4), 7, device="cuda"))
    with pytest.raises(ValueError, match="idx is on cpu"):
        ops.imitation_bce(logits, torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(RuntimeError, match="grad must be a floating scalar"):
        L.imitation_bce_backward(torch.ones(2, device="cuda"), logits, torch.zeros(2, 3, 4, dtype=torch.long, device="cuda"))
    assert torch.isnan(L.imitation_bce(torch.empty(0, 5, 2, 2, device="cuda"), torch.empty(0, 2, 2, dtype=torch.long, device="cuda")))
    assert L.imitation_bce_backward(torch.ones((), device="cuda"), torch.empty(0, 5, 2, 2, device="cuda"), torch.empty(0, 2, 2, dtype=torch.long, device="cuda")).shape == (0, 5, 2, 2)
    nc = logits.transpose(2, 3).contiguous().transpose(2, 3)
    k = torch.randint(0, 5, (2, 3, 4), generator=_g(1)).cuda()
    assert torch.equal(L.imitation_bce(nc, k), L.imitation_bce(logits, k))
    assert torch.equal(L.imitation_bce(logits, k.int()), L.imitation_bce(logits, k))  # int32 indices


# ---- mask_fuse ------------------------------------------------------------------------------


def _fuse_inputs(b, c, h, w, dtype, seed=0):
    g = _g(seed)
    zt, zh = (torch.randn(b, c, h, w, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    return zt, zh, *_masks(b, h, w, seed + 1)


@pytest.mark.parametrize("path", ["vectorised", "scalar-odd-plane", "scalar-misaligned"])
def test_mask_fuse_fp32_paths_wrap_the_grid(path):
    b, c = 2, 16
    h, w = wrapping_hw(b * c // 4 if path == "vectorised" else b * c, plane="odd" if path == "scalar-odd-plane" else "mult4")
    zt, zh, ms, mg, mr = _fuse_inputs(b, c, h, w, torch.float32)
    if path == "vectorised":
        assert (h * w) % 4 == 0 and b * c * h * w // 4 > 2 * grid_threads()
    elif path == "scalar-odd-plane":
        assert (h * w) % 2 == 1 and b * c * h * w > 2 * grid_threads()
    gpu = [t.cuda() for t in (zt, zh, ms, mg, mr)]
    if path == "scalar-misaligned":  # the same values one float into their buffers: 4-byte aligned only
        for i in (0, 1):
            buf = torch.empty(gpu[i].numel() + 1, device="cuda")
            gpu[i] = buf[1:].view_as(gpu[i]).copy_(gpu[i])
            assert gpu[i].data_ptr() % 16 != 0 and gpu[i].is_contiguous()
    want = ops.mask_fuse_reference(zt, zh, ms, mg, mr)
    got = L.mask_fuse(*gpu).cpu()
    assert torch.equal(got, want) and torch.equal(got, L.mask_fuse(zt, zh, ms, mg, mr))
    assert torch.equal(got[-1, -1, -1, -4:], want[-1, -1, -1, -4:])  # the tail of the last pass


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_mask_fuse_other_dtypes_wrap_the_grid(dtype):
    b, c = 2, 8
    h, w = wrapping_hw(b * c)
    zt, zh, ms, mg, mr = _fuse_inputs(b, c, h, w, dtype)
    got = L.mask_fuse(*(t.cuda() for t in (zt, zh, ms, mg, mr))).cpu()
    assert torch.equal(got, ops.mask_fuse_reference(zt, zh, ms, mg, mr))


def test_mask_fuse_backward_wraps_the_grid_and_routes_gradients():
    b, c = 2, 8
    h, w = wrapping_hw(b * c)
    zt, zh, ms, mg, mr = _fuse_inputs(b, c, h, w, torch.float32)
    a, hh = zt.cuda().requires_grad_(True), zh.cuda().requires_grad_(True)
    gm = [m.cuda() for m in (ms, mg, mr)]
    up = torch.randn(b, c, w, h, generator=_g(9)).cuda().transpose(2, 3)  # a non-contiguous upstream gradient
    ops.mask_fuse(a, hh, *gm).backward(up)
    pick = torch.where(ms != mg, ms, mr)[:, None].cuda()
    assert torch.equal(a.grad, torch.where(pick, up, torch.zeros_like(up))) and torch.equal(hh.grad, torch.where(pick, torch.zeros_like(up), up))
    ct, ch = L.mask_fuse_backward(up.cpu(), ms, mg, mr)
    assert torch.equal(a.grad.cpu(), ct) and torch.equal(hh.grad.cpu(), ch)
    with pytest.raises(RuntimeError, match="m_g must be"):
        L.mask_fuse_backward(up, gm[0], gm[1][:, :2], gm[2])
    with pytest.raises(RuntimeError, match="m_r is on cpu"):
        L.mask_fuse_backward(up, gm[0], gm[1], mr)


def test_mask_fuse_out_masks_and_edges_on_cuda():
    zt, zh, ms, mg, mr = (t.cuda() for t in _fuse_inputs(3, 64, 16, 16, torch.float32))
    want = ops.mask_fuse_reference(zt, zh, ms, mg, mr)
    out = torch.empty_like(zt)
    assert ops.mask_fuse(zt, zh, ms, mg, mr, out=out) is out and torch.equal(out, want)
    L.mask_fuse.out(zt, zh, ms, mg, mr, out=out)
    assert torch.equal(out, want)
    for bad in (torch.empty(3, 64, 16, 16, device="cuda").transpose(2, 3), torch.empty(3, 64, 16, 16, device="cuda", dtype=torch.float16), torch.empty_like(zt, device="cpu")):
        with pytest.raises(ValueError, match="out must be"):
            ops.mask_fuse(zt, zh, ms, mg, mr, out=bad)
        with pytest.raises(RuntimeError, match="out must be"):
            L.mask_fuse.out(zt, zh, ms, mg, mr, out=bad)
    # masks as float / uint8, strided masks and strided z
    assert torch.equal(L.mask_fuse(zt, zh, ms.float(), mg.to(torch.uint8), mr.double()), want)
    assert torch.equal(L.mask_fuse(zt, zh, ms.transpose(1, 2).contiguous().transpose(1, 2), mg, mr), want)
    assert torch.equal(L.mask_fuse(zt.to(memory_format=torch.channels_last), zh, ms, mg, mr), want)
    # a NaN/inf in the vector not picked never reaches the output (a select on bits)
    poisoned = zh.clone()
    pick = torch.where(ms != mg, ms, mr)[:, None].expand_as(zh)
    poisoned[pick] = float("nan")
    assert torch.equal(L.mask_fuse(zt, poisoned, ms, mg, mr), want)
    e = torch.empty(0, 4, 3, 3, device="cuda")
    assert L.mask_fuse(e, e, *(torch.empty(0, 3, 3, dtype=torch.bool, device="cuda"),) * 3).shape == (0, 4, 3, 3)
    with pytest.raises(ValueError, match="m_s is on cpu"):
        ops.mask_fuse(zt, zh, ms.cpu(), mg, mr)
    x, y = (torch.randn(2, 4, 3, 5, dtype=torch.float64, device="cuda", requires_grad=True) for _ in range(2))
    m = [t.cuda() for t in _masks(2, 3, 5)]
    assert torch.autograd.gradcheck(lambda a, b: ops.mask_fuse(a, b, *m), (x, y))
    torch.library.opcheck(L.mask_fuse.default, (x, y, *m))
    torch.library.opcheck(L.mask_fuse.out, (x.detach(), y.detach(), *m), {"out": torch.empty_like(x.detach())}, test_utils=("test_schema", "test_faketensor"))


# ---- device guard, streams, compile ---------------------------------------------------------


def test_kernels_run_on_the_current_stream():
    """Captured in a CUDA graph: a launch on any stream but the capturing one is an error. Then a
    side stream, inputs written on it just before the op, read without any synchronisation."""
    zt, zh, ms, mg, mr = (t.cuda() for t in _fuse_inputs(2, 16, 32, 32, torch.float32))
    logits, u = _logits(2, 16, 32, 32, torch.float32).cuda(), torch.rand(2, 32, 32, generator=_g(3)).cuda()
    want_f, want_s = L.mask_fuse(zt, zh, ms, mg, mr), L.channel_sample(logits, u)
    want_b = L.mask_fuse_backward(zt, ms, mg, mr)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on the capture stream, as torch's docs require
        L.mask_fuse(zt, zh, ms, mg, mr), L.channel_sample(logits, u), L.mask_fuse_backward(zt, ms, mg, mr)
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        f, s, (bt, bh) = L.mask_fuse(zt, zh, ms, mg, mr), L.channel_sample(logits, u), L.mask_fuse_backward(zt, ms, mg, mr)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(f, want_f) and torch.equal(s, want_s) and torch.equal(bt, want_b[0]) and torch.equal(bh, want_b[1])
    k = torch.randint(0, 16, (2, 32, 32), generator=_g(5)).cuda()
    want_l = L.imitation_bce(logits, k)
    big = torch.randn(4096, 4096, device="cuda")
    with torch.cuda.stream(side):
        fresh = torch.empty_like(logits)
        big @ big  # keeps the side stream busy, so a kernel on another stream would run first
        fresh.copy_(logits)
        loss, grad = L.imitation_bce(fresh, k), L.imitation_bce_backward(torch.ones((), device="cuda"), fresh, k)
    side.synchronize()
    assert torch.equal(loss, want_l) and torch.equal(grad, L.imitation_bce_backward(torch.ones((), device="cuda"), logits, k))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_device_guard_runs_on_the_inputs_gpu():
    zt, zh, ms, mg, mr = _fuse_inputs(2, 8, 16, 16, torch.float32)
    logits, u = _logits(2, 8, 16, 16, torch.float32), torch.rand(2, 16, 16, generator=_g(2))
    with torch.cuda.device(0):
        got = L.mask_fuse(*(t.to("cuda:1") for t in (zt, zh, ms, mg, mr)))
        draw = L.channel_sample(logits.to("cuda:1"), u.to("cuda:1"))
        loss = L.imitation_bce(logits.to("cuda:1"), draw)
    assert got.device == torch.device("cuda", 1) and torch.equal(got.cpu(), L.mask_fuse(zt, zh, ms, mg, mr))
    assert torch.equal(draw.cpu(), L.channel_sample(logits, u)) and loss.device == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="is on cuda:0"):
        ops.mask_fuse(zt.to("cuda:1"), zh.to("cuda:1"), ms.to("cuda:0"), mg.to("cuda:1"), mr.to("cuda:1"))


def test_ops_compile_fullgraph_on_cuda():
    logits, u = _logits(2, 16, 8, 8, torch.float32).cuda(), torch.rand(2, 8, 8, generator=_g(1)).cuda()
    zt, zh, ms, mg, mr = (t.cuda() for t in _fuse_inputs(2, 16, 8, 8, torch.float32))

    @torch.compile(fullgraph=True, backend="eager")
    def step(logits, u, zt, zh, ms, mg, mr):
        idx = ops.channel_sample(logits, u)
        return ops.imitation_bce(logits, idx), ops.mask_fuse(zt, zh, ms, mg, mr)

    loss, fused = step(logits, u, zt, zh, ms, mg, mr)
    assert torch.equal(loss, L.imitation_bce(logits, L.channel_sample(logits, u))) and torch.equal(fused, L.mask_fuse(zt, zh, ms, mg, mr))
