"""Fused ops vs their peers, side by side in one run (docs/kernels.md):
(a) the literal eager formula, (b) the best eager rewrite, (c) torch.compile of the formula,
(d) ours. Memory bandwidth (copy and triad) is measured in the same run and each result
reports bytes moved / time as a fraction of it (``extra_info``). Every benchmark checks its
result after timing it.

    pytest benchmarks/ --benchmark-only -k ops --benchmark-group-by=group --benchmark-json=results/benchmarks/ops-cpu.json

On a GPU every time is also taken with CUDA events (``event_s``: min of 5 replays between
events on the current stream, after a warm-up) and the fractions of the copy bandwidth come
from those. ``benchmarks/gpu_check.sh`` runs this file on a GPU, and with tiny sizes on the CPU.
Sizes and device can be overridden (the GPU check's CPU mode): ``LTBENCH_BENCH_DEVICE``
(cpu/cuda), ``LTBENCH_BENCH_BATCHES`` (e.g. "2,4"), ``LTBENCH_BENCH_C``, ``LTBENCH_BENCH_HW``.
"""

import os

import time

import pytest
import torch
import torch.nn.functional as F

from ltbench import ops

C, HW = int(os.environ.get("LTBENCH_BENCH_C", 64)), int(os.environ.get("LTBENCH_BENCH_HW", 64))
DEVICE = os.environ.get("LTBENCH_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
BATCHES = [int(b) for b in os.environ["LTBENCH_BENCH_BATCHES"].split(",")] if os.environ.get("LTBENCH_BENCH_BATCHES") else ([8, 64, 256] if DEVICE == "cuda" else [8, 64])  # the spec lets CPU cap B at 64
HAVE_FUSED = ops.extension_available() and hasattr(torch.ops.ltbench, "mask_fuse")


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps=5):
    """Best-of-reps seconds with device synchronisation (for the bandwidth probes); on a GPU
    the time between CUDA events around each call."""
    if DEVICE == "cuda":
        return event_seconds(fn, reps)
    best = float("inf")
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def event_seconds(fn, reps=5):
    """Min over ``reps`` of the GPU time between two CUDA events around ``fn`` (one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


@pytest.fixture(scope="session")
def bandwidth():
    # the largest CPU shape (64 MiB per fp32 tensor); on a GPU at least 1 GiB, far beyond its caches
    n = max(64 * C * HW * HW, 2**28 if DEVICE == "cuda" else 0)
    a, b, c = (torch.randn(n, device=DEVICE) for _ in range(3))
    copy = 2 * 4 * n / timed(lambda: a.copy_(b))
    triad = 3 * 4 * n / timed(lambda: torch.add(b, c, alpha=0.5, out=a))
    return {"copy_GBps": copy / 1e9, "triad_GBps": triad / 1e9}


def run(benchmark, fn, bandwidth, compulsory, real, peer_note, **info):
    """Times fn (min of 5, synchronised) and records, beside the time: ``compulsory_bytes`` (what
    any implementation must read and write: the inputs once, the output once; the same for
    every peer of an op), ``real_bytes`` (this implementation's own traffic, counted per pass
    over memory from what it does; approximate for eager chains), the bandwidths of both, and
    ``does`` (what this peer computes beyond or short of the op)."""

    def call():
        out = fn()
        sync()
        return out

    out = benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
    secs = benchmark.stats.stats.min
    if DEVICE == "cuda":  # the kernels' own time, without the host's launch and sync latency
        secs = event_seconds(fn)
        info["event_s"] = secs
    gbps = compulsory / secs / 1e9
    benchmark.extra_info.update(
        device=DEVICE,
        device_name=torch.cuda.get_device_name() if DEVICE == "cuda" else None,
        shape={"C": C, "HW": HW},
        cpu_isa=ops.cpu_isa(),
        dtype="float32",
        compulsory_bytes=int(compulsory),
        real_bytes=int(real),
        GBps=round(gbps, 2),
        real_GBps=round(real / secs / 1e9, 2),
        frac_triad=round(gbps / bandwidth["triad_GBps"], 3),
        frac_copy=round(gbps / bandwidth["copy_GBps"], 3),
        does=peer_note,
        **{k: round(v, 2) for k, v in bandwidth.items()},
        **info,
    )
    return out


# ---- mask_fuse ------------------------------------------------------------------------------

# Everything goes through the public boundary (ltbench.ops.*), as a user calls it. d-ltbench-out
# writes into a preallocated output as b-where does; d-ltbench allocates its result as a-formula
# and c-compiled do (on CPU a fresh 64 MiB result costs its page faults).
FUSE_IMPLS = ["a-formula", "b-where", "c-compiled", "d-ltbench", "d-ltbench-out"]


def fuse_bytes(impl, n, m):
    """(compulsory, real) bytes for n fp32 elements of z and m pixels of each bool mask."""
    compulsory = 3 * 4 * n + 3 * m  # read z_t, z_h, three masks; write z_f
    real = {
        # Eq. 8-12 term by term: masks cast to float, then 9 full-size elementwise products/sums,
        # each reading one or two N-tensors and writing one (8 + 8 + 12 + 8 + 8 + 8 + 8 + 12 + 12 = 84 B/element)
        "a-formula": 84 * n + 3 * 5 * m,
        # pick = where(ms != mg, ms, mr) (a few mask passes), then one select into `out`
        "b-where": 12 * n + 8 * m,
        # inductor fuses the formula into one loop: the compulsory traffic
        "c-compiled": compulsory,
        "d-ltbench": compulsory,
        "d-ltbench-out": compulsory,
    }[impl]
    return compulsory, real


FUSE_NOTES = {
    "a-formula": "Eq. 7-12 literally (ops.mask_fuse_formula); allocates every intermediate",
    "b-where": "torch.where(pick, z_t, z_h, out=out): the best eager rewrite, into a preallocated output; not differentiable with out=",
    "c-compiled": "torch.compile(ops.mask_fuse_formula), allocating its result",
    "d-ltbench": "ops.mask_fuse, allocating its result; differentiable",
    "d-ltbench-out": "ops.mask_fuse(..., out=out) into a preallocated output",
}


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
        fn = lambda: ops.mask_fuse(zt, zh, ms, mg, mr)  # noqa: E731
    else:
        fn = lambda: ops.mask_fuse(zt, zh, ms, mg, mr, out=out)  # noqa: E731
    compulsory, real = fuse_bytes(impl, zt.numel(), ms.numel())
    res = run(benchmark, fn, bandwidth, compulsory, real, FUSE_NOTES[impl], op="mask_fuse", impl=impl, B=B)
    assert torch.equal(res, ops.mask_fuse_reference(zt, zh, ms, mg, mr))  # the timed result itself


# ---- channel_sample -------------------------------------------------------------------------

SAMPLE_IMPLS = ["a-softmax-multinomial-onehot", "b-inverse-cdf", "c-compiled-inverse-cdf", "c-compiled-gumbel", "d-ltbench"]

SAMPLE_NOTES = {
    "a-softmax-multinomial-onehot": "what the authors' imitation step does: probabilities, torch.multinomial per pixel, and a one-hot target (ltbench never builds the one-hot)",
    "b-inverse-cdf": "ops.channel_sample_reference: the same draw as ltbench (one uniform per pixel), eager",
    "c-compiled-inverse-cdf": "torch.compile of the same reference: the like-for-like compiled peer (one uniform per pixel)",
    "c-compiled-gumbel": "compiled Gumbel-max argmax(l - log(-log(e))): another sampler, needing C uniforms per pixel (B*C*H*W, drawn outside the timing)",
    "d-ltbench": "ops.channel_sample: one uniform per pixel, two passes over each pixel's logits in cache",
}


def sample_bytes(impl, n, p):
    """(compulsory, real) bytes: n fp32 logits, p pixels (one fp32 uniform, one int64 index each)."""
    compulsory = 4 * n + 4 * p + 8 * p
    real = {
        # softmax (r+w), permute+reshape copy (r+w), multinomial (reads p), one_hot int64 (w 8),
        # permute + float (r 8 + w 4): 4+4+4+4+4+8+8+4 = 40 B per logit
        "a-softmax-multinomial-onehot": 40 * n + 8 * p,
        # softmax (r+w), cumsum (r+w), compare with u (r 4, w 1), not (1+1), sum (r 1), p > 0
        # (r 4 w 1), flip (1+1), int (1+4), argmax (r 4): about 35 B per logit
        "b-inverse-cdf": 35 * n + 4 * p + 24 * p,
        "c-compiled-inverse-cdf": compulsory,
        "c-compiled-gumbel": 8 * n + 8 * p,  # logits and one uniform per logit, index out
        "d-ltbench": compulsory,
    }[impl]
    return compulsory, real


@pytest.fixture(scope="module")
def compiled_gumbel():
    return torch.compile(lambda logits, e: torch.argmax(logits - torch.log(-torch.log(e)), dim=1))


@pytest.fixture(scope="module")
def compiled_inverse_cdf():
    return torch.compile(ops.channel_sample_reference)


@pytest.mark.parametrize("impl", SAMPLE_IMPLS)
@pytest.mark.parametrize("B", BATCHES)
def test_ops_channel_sample(benchmark, bandwidth, compiled_gumbel, compiled_inverse_cdf, B, impl):
    if impl == "d-ltbench" and not HAVE_FUSED:
        pytest.skip("extension not built")
    benchmark.group = f"channel_sample B={B} C={C} {HW}x{HW}"
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, C, HW, HW, generator=g).to(DEVICE)
    u = torch.rand(B, HW, HW, generator=g).to(DEVICE)
    if impl == "a-softmax-multinomial-onehot":
        def fn():
            p = torch.softmax(logits, 1).permute(0, 2, 3, 1).reshape(-1, C)
            idx = torch.multinomial(p, 1).view(B, HW, HW)
            return F.one_hot(idx, C).permute(0, 3, 1, 2).float(), idx
    elif impl == "b-inverse-cdf":
        fn = lambda: (None, ops.channel_sample_reference(logits, u))  # noqa: E731
    elif impl == "c-compiled-inverse-cdf":
        compiled_inverse_cdf(logits, u)
        fn = lambda: (None, compiled_inverse_cdf(logits, u))  # noqa: E731
    elif impl == "c-compiled-gumbel":
        e = torch.rand(B, C, HW, HW, generator=g).to(DEVICE).clamp_min(1e-12)
        compiled_gumbel(logits, e)
        fn = lambda: (None, compiled_gumbel(logits, e))  # noqa: E731
    else:
        fn = lambda: (None, ops.channel_sample(logits, u))  # noqa: E731
    compulsory, real = sample_bytes(impl, logits.numel(), u.numel())
    _, idx = run(benchmark, fn, bandwidth, compulsory, real, SAMPLE_NOTES[impl], op="channel_sample", impl=impl, B=B)
    assert idx.shape == (B, HW, HW) and idx.dtype == torch.int64 and idx.min() >= 0 and idx.max() < C
    if impl in ("b-inverse-cdf", "c-compiled-inverse-cdf", "d-ltbench"):  # the same draw: equal up to float rounding at CDF steps
        assert (idx != ops.channel_sample_reference(logits, u)).float().mean() < 1e-3
    else:  # other samplers: the draws' channel frequencies follow softmax(logits)
        freq = torch.bincount(idx.flatten(), minlength=C).float() / idx.numel()
        expected = torch.softmax(logits, 1).mean((0, 2, 3))
        assert (freq - expected).abs().max() < max(0.01, 4 / idx.numel() ** 0.5)  # tiny shapes (the GPU check's CPU mode): sampling noise


# ---- imitation_bce forward + backward ---------------------------------------------------------

BCE_IMPLS = ["a-eager-autograd", "b-logsoftmax-rewrite", "c-compiled", "d-ltbench"]

BCE_NOTES = {
    "a-eager-autograd": "BCELoss(softmax(l), one_hot(k)) with autograd: materialises p and a float one-hot",
    "b-logsoftmax-rewrite": "log_softmax, log1p(-p) and gather: no one-hot, more passes",
    "c-compiled": "torch.compile of the literal loss, forward and backward",
    "d-ltbench": "ops.imitation_bce (forward and backward kernels; the softmax recomputed in the backward instead of saved)",
}


def bce_bytes(impl, n, p):
    """(compulsory, real) bytes, forward + backward: n fp32 logits, p pixels (int64 index)."""
    compulsory = 4 * n + 8 * p + 4 * n + 8 * p + 4 * n  # fwd reads l, k; bwd reads l, k, writes dl
    real = {
        # fwd: softmax (r+w 8), one_hot int64 (w 8), permute+to float (r 8 w 4), BCE (r 8);
        # bwd: BCE grad (r 8 w 4), softmax backward (r 8 w 4), grad accumulate (w 4): 72 B per logit
        "a-eager-autograd": 72 * n + 16 * p,
        # log_softmax (8), exp (8), clamp (8), log1p (8), gathers, clamps, sums (~16); backward about as much again
        "b-logsoftmax-rewrite": 100 * n + 16 * p,
        "c-compiled": compulsory + 8 * n,  # inductor saves p (or the log-softmax) for the backward
        "d-ltbench": compulsory,
    }[impl]
    return compulsory, real


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


@pytest.fixture(scope="module")
def bce_expected():
    """The literal loss and its gradient in float64 for each batch size: what every timed
    result is checked against."""
    cache = {}

    def get(base, idx):
        key = base.shape[0]
        if key not in cache:
            x = base.double().requires_grad_(True)
            loss = _literal(x, idx)
            loss.backward()
            cache[key] = (loss.detach(), x.grad)
        return cache[key]

    return get


@pytest.mark.parametrize("impl", BCE_IMPLS)
@pytest.mark.parametrize("B", BATCHES)
def test_ops_imitation_bce(benchmark, bandwidth, compiled_literal, bce_expected, B, impl):
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

    compulsory, real = bce_bytes(impl, base.numel(), idx.numel())
    loss, grad = run(benchmark, fn, bandwidth, compulsory, real, BCE_NOTES[impl], op="imitation_bce", impl=impl, B=B)
    # the timed loss and gradient themselves, against float64
    ref_loss, ref_grad = bce_expected(base, idx)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-3, atol=1e-11)
