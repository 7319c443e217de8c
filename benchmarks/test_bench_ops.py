"""Fused ops vs their peers, side by side in one run (docs/kernels.md):
(a) the literal eager formula, (b) the best eager rewrite, (c) torch.compile of the formula,
(d) ours. Memory bandwidth (copy and triad) is measured in the same run and each result
reports bytes moved / time as a fraction of it (``extra_info``). Every benchmark checks its
result after timing it.

    pytest benchmarks/ --benchmark-only -k ops --benchmark-group-by=group --benchmark-json=results/benchmarks/ops-cpu.json
"""

import time

import pytest
import torch
import torch.nn.functional as F

from ltbench import ops

C, HW = 64, 64
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BATCHES = [8, 64, 256] if DEVICE == "cuda" else [8, 64]  # the spec lets CPU cap B at 64
HAVE_FUSED = ops.extension_available() and hasattr(torch.ops.ltbench, "mask_fuse")


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps=5):
    """Best-of-reps seconds with device synchronisation (for the bandwidth probes)."""
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


@pytest.fixture(scope="session")
def bandwidth():
    n = 64 * C * HW * HW  # the largest CPU shape: 64 MiB per fp32 tensor
    a, b, c = (torch.randn(n, device=DEVICE) for _ in range(3))
    copy = 2 * 4 * n / timed(lambda: a.copy_(b))
    triad = 3 * 4 * n / timed(lambda: torch.add(b, c, alpha=0.5, out=a))
    return {"copy_GBps": copy / 1e9, "triad_GBps": triad / 1e9}


def run(benchmark, fn, bytes_moved, bandwidth, **info):
    def call():
        out = fn()
        sync()
        return out

    out = benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
    secs = benchmark.stats.stats.min
    gbps = bytes_moved / secs / 1e9
    benchmark.extra_info.update(device=DEVICE, dtype="float32", GBps=round(gbps, 2), frac_triad=round(gbps / bandwidth["triad_GBps"], 3), frac_copy=round(gbps / bandwidth["copy_GBps"], 3), **{k: round(v, 2) for k, v in bandwidth.items()}, **info)
    return out


# ---- mask_fuse ------------------------------------------------------------------------------

# d-ltbench-out writes into a preallocated output like b-where does; d-ltbench allocates its
# result like a-formula and c-compiled (on CPU a fresh 64 MiB result costs its page faults).
FUSE_IMPLS = ["a-formula", "b-where", "c-compiled", "d-ltbench", "d-ltbench-out"]


@pytest.fixture(scope="module")
def compiled_formula():
    return torch.compile(ops.mask_fuse_formula)


@pytest.mark.parametrize("impl", FUSE_IMPLS)
@pytest.mark.parametrize("B", BATCHES)
def test_ops_mask_fuse(benchmark, bandwidth, compiled_formula, B, impl):
    if impl.startswith("d-ltbench") and not HAVE_FUSED:
        pytest.skip("extension not built")
    benchmark.group = f"mask_fuse B={B} C={C} {HW}x{HW}"
    g = torch.Generator().manual_seed(0)
    zt, zh = (torch.randn(B, C, HW, HW, generator=g).to(DEVICE) for _ in range(2))
    ms, mg, mr = ((torch.rand(B, HW, HW, generator=g) < 0.5).to(DEVICE) for _ in range(3))
    out = torch.empty_like(zt)
    if impl == "a-formula":
        fn = lambda: ops.mask_fuse_formula(zt, zh, ms, mg, mr)  # noqa: E731
    elif impl == "b-where":
        fn = lambda: torch.where(torch.where(ms != mg, ms, mr)[:, None], zt, zh, out=out)  # noqa: E731
    elif impl == "c-compiled":
        compiled_formula(zt, zh, ms, mg, mr)  # compile outside the timing
        fn = lambda: compiled_formula(zt, zh, ms, mg, mr)  # noqa: E731
    elif impl == "d-ltbench":
        fn = lambda: torch.ops.ltbench.mask_fuse(zt, zh, ms, mg, mr)  # noqa: E731
    else:
        def fn():
            torch.ops.ltbench.mask_fuse.out(zt, zh, ms, mg, mr, out=out)
            return out
    res = run(benchmark, fn, 3 * zt.numel() * 4 + 3 * ms.numel(), bandwidth, op="mask_fuse", impl=impl, B=B)
    assert torch.equal(res, ops.mask_fuse_reference(zt, zh, ms, mg, mr))


# ---- channel_sample -------------------------------------------------------------------------

SAMPLE_IMPLS = ["a-softmax-multinomial-onehot", "b-inverse-cdf", "c-compiled-gumbel", "d-ltbench"]


def _gumbel_max(logits, g):
    return torch.argmax(logits + g, dim=1)


@pytest.fixture(scope="module")
def compiled_gumbel():
    return torch.compile(lambda logits, e: torch.argmax(logits - torch.log(-torch.log(e)), dim=1))


@pytest.mark.parametrize("impl", SAMPLE_IMPLS)
@pytest.mark.parametrize("B", BATCHES)
def test_ops_channel_sample(benchmark, bandwidth, compiled_gumbel, B, impl):
    if impl == "d-ltbench" and not HAVE_FUSED:
        pytest.skip("extension not built")
    benchmark.group = f"channel_sample B={B} C={C} {HW}x{HW}"
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, C, HW, HW, generator=g).to(DEVICE)
    u = torch.rand(B, HW, HW, generator=g).to(DEVICE)
    if impl == "a-softmax-multinomial-onehot":
        def fn():  # what the authors' imitation step does: probabilities, a draw, a one-hot target
            p = torch.softmax(logits, 1).permute(0, 2, 3, 1).reshape(-1, C)
            idx = torch.multinomial(p, 1).view(B, HW, HW)
            return F.one_hot(idx, C).permute(0, 3, 1, 2).float(), idx
    elif impl == "b-inverse-cdf":
        fn = lambda: (None, ops.channel_sample_reference(logits, u))  # noqa: E731
    elif impl == "c-compiled-gumbel":
        e = torch.rand(B, C, HW, HW, generator=g).to(DEVICE).clamp_min(1e-12)  # a uniform per channel
        compiled_gumbel(logits, e)
        fn = lambda: (None, compiled_gumbel(logits, e))  # noqa: E731
    else:
        fn = lambda: (None, torch.ops.ltbench.channel_sample(logits, u))  # noqa: E731
    _, idx = run(benchmark, fn, logits.numel() * 4 + u.numel() * 4 + idx_bytes(B), bandwidth, op="channel_sample", impl=impl, B=B)
    assert idx.shape == (B, HW, HW) and idx.min() >= 0 and idx.max() < C
    if impl in ("b-inverse-cdf", "d-ltbench"):
        ref = ops.channel_sample_reference(logits, u)
        assert (idx != ref).float().mean() < 1e-3


def idx_bytes(B):
    return B * HW * HW * 8


# ---- imitation_bce forward + backward ---------------------------------------------------------

BCE_IMPLS = ["a-eager-autograd", "b-logsoftmax-rewrite", "c-compiled", "d-ltbench"]


def _literal(logits, idx):
    p = torch.softmax(logits, 1)
    return F.binary_cross_entropy(p, F.one_hot(idx, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype))


def _rewrite(logits, idx):
    # log p and log(1 - p) from log_softmax without materialising a one-hot
    logp = torch.log_softmax(logits, 1)
    log1mp = torch.log1p(-logp.exp().clamp(max=1 - 1e-7))
    tgt = logp.gather(1, idx[:, None]).clamp_min(-100) - log1mp.gather(1, idx[:, None]).clamp_min(-100)
    return -(log1mp.clamp_min(-100).sum() + tgt.sum()) / logits.numel()


@pytest.fixture(scope="module")
def compiled_literal():
    return torch.compile(_literal)


@pytest.mark.parametrize("impl", BCE_IMPLS)
@pytest.mark.parametrize("B", BATCHES)
def test_ops_imitation_bce(benchmark, bandwidth, compiled_literal, B, impl):
    if impl == "d-ltbench" and not HAVE_FUSED:
        pytest.skip("extension not built")
    benchmark.group = f"imitation_bce fwd+bwd B={B} C={C} {HW}x{HW}"
    g = torch.Generator().manual_seed(0)
    base = torch.randn(B, C, HW, HW, generator=g).to(DEVICE)
    idx = torch.randint(0, C, (B, HW, HW), generator=g).to(DEVICE)
    f = {"a-eager-autograd": _literal, "b-logsoftmax-rewrite": _rewrite, "c-compiled": compiled_literal, "d-ltbench": ops.imitation_bce}[impl]
    x = base.clone().requires_grad_(True)
    f(x, idx).backward()  # warm-up / compile outside the timing

    def fn():
        x.grad = None
        loss = f(x, idx)
        loss.backward()
        return loss.detach(), x.grad

    loss, grad = run(benchmark, fn, 3 * base.numel() * 4 + idx.numel() * 8, bandwidth, op="imitation_bce", impl=impl, B=B)
    ref_x = base[:2].clone().requires_grad_(True)
    ref = _literal(ref_x, idx[:2])
    ref.backward()
    x2 = base[:2].clone().requires_grad_(True)
    f(x2, idx[:2]).backward()
    torch.testing.assert_close(x2.grad, ref_x.grad, rtol=1e-3, atol=1e-9)
    assert torch.isfinite(loss) and grad.shape == base.shape
