"""Pure-PyTorch references of the method's ops (``docs/kernels.md``).

They are the fallback when ``ltbench._C`` is absent and the oracle of the kernel tests, and
each mirrors what its kernel computes. Randomness is always an input (uniforms, masks), so
every op is a pure function.
"""

import torch
import torch.nn.functional as F

BCE_LOG_CLAMP = -100.0  # torch.nn.BCELoss clamps log(p) and log(1 - p) at -100


def _check(name: str, cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(f"ltbench.ops.{name}: {msg}")


def check_channel_sample(logits: torch.Tensor, u: torch.Tensor) -> None:
    _check("channel_sample", logits.dim() == 4, f"logits must be [B, C, H, W], got shape {list(logits.shape)}")
    _check("channel_sample", logits.is_floating_point(), f"logits must be floating point, got {logits.dtype}")
    _check("channel_sample", logits.shape[1] > 0, "logits need at least one channel")
    b, _, h, w = logits.shape
    _check("channel_sample", tuple(u.shape) == (b, h, w), f"u must be [B, H, W] = {[b, h, w]}, got {list(u.shape)}")
    _check("channel_sample", u.is_floating_point(), f"u must be floating point, got {u.dtype}")
    _check("channel_sample", u.device == logits.device, f"u is on {u.device}, logits on {logits.device}")


def channel_sample_reference(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw from softmax over channels. logits Tensor[B, C, H, W], u Tensor[B, H, W]
    in [0, 1) -> idx int64[B, H, W]: the first k with cumsum(softmax)[k] > u; when no k
    qualifies (rounding leaves u >= the total, u >= 1, or u is NaN), the last k with p > 0,
    and 0 when no p > 0 (a pixel of NaN probabilities)."""
    check_channel_sample(logits, u)
    p = torch.softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=1)
    cdf = p.cumsum(1)
    idx = (~(cdf > u.to(cdf.dtype)[:, None])).sum(1)  # k's before the first cdf > u (NaN u: all C)
    c = logits.shape[1]
    pos = p > 0
    last_pos = torch.where(pos.any(1), c - 1 - pos.flip(1).int().argmax(1), 0)
    return torch.minimum(idx, last_pos).long()


def check_imitation_bce(logits: torch.Tensor, idx: torch.Tensor, values: bool = True) -> None:
    _check("imitation_bce", logits.dim() == 4, f"student_logits must be [B, C, H, W], got shape {list(logits.shape)}")
    _check("imitation_bce", logits.is_floating_point(), f"student_logits must be floating point, got {logits.dtype}")
    b, _, h, w = logits.shape
    _check("imitation_bce", tuple(idx.shape) == (b, h, w), f"idx must be [B, H, W] = {[b, h, w]}, got {list(idx.shape)}")
    _check("imitation_bce", idx.dtype in (torch.int64, torch.int32), f"idx must be int64 or int32, got {idx.dtype}")
    _check("imitation_bce", idx.device == logits.device, f"idx is on {idx.device}, student_logits on {logits.device}")
    # a data-dependent check: skipped inside torch.compile'd callers and on meta tensors
    # (shape propagation, FakeTensor), which have no values to check
    if values and idx.numel() and idx.device.type != "meta" and logits.device.type != "meta":
        _check("imitation_bce", bool((idx >= 0).all() and (idx < logits.shape[1]).all()), f"idx must be in [0, {logits.shape[1]})")


def imitation_bce_reference(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mean over B*C*H*W of BCE(softmax(logits), one_hot(idx)), logs clamped at -100
    as in torch's BCELoss. Differentiable by autograd. -> scalar Tensor.

    Non-finite logits propagate: a pixel with a NaN or +inf logit, or with every logit -inf,
    has NaN probabilities, the loss is NaN and that pixel's gradient is NaN (other pixels keep
    theirs), which is what the fused kernels compute. (BCELoss itself refuses NaN inputs.)"""
    check_imitation_bce(logits, idx)
    # float16/bfloat16 are computed in float32 like the kernels' op-math (BCELoss's 1e-12
    # gradient floor is 0 in float16, which turns an ordinary -inf logit into a NaN gradient)
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    p = torch.softmax(x, dim=1)
    target = F.one_hot(idx.long(), logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    bad = torch.isnan(p)
    if p.device.type == "meta" or not bool(bad.any()):  # meta tensors have shapes, no values
        return F.binary_cross_entropy(p, target).to(logits.dtype)
    loss = F.binary_cross_entropy(p.masked_fill(bad, 0.5), target)
    return (loss + p.masked_fill(~bad, 0.0).sum() * 0.0).to(logits.dtype)  # NaN, NaN gradients on the bad pixels


def check_mask_fuse(z_t, z_h, m_s, m_g, m_r) -> None:
    _check("mask_fuse", z_t.dim() == 4, f"z_t must be [B, C, H, W], got shape {list(z_t.shape)}")
    _check("mask_fuse", z_t.shape == z_h.shape, f"z_h must match z_t {list(z_t.shape)}, got {list(z_h.shape)}")
    _check("mask_fuse", z_t.dtype == z_h.dtype and z_t.is_floating_point(), f"z_t and z_h must share a floating dtype, got {z_t.dtype} and {z_h.dtype}")
    b, _, h, w = z_t.shape
    for name, m in (("m_s", m_s), ("m_g", m_g), ("m_r", m_r)):
        _check("mask_fuse", tuple(m.shape) == (b, h, w), f"{name} must be [B, H, W] = {[b, h, w]}, got {list(m.shape)}")
        _check("mask_fuse", m.device == z_t.device, f"{name} is on {m.device}, z_t on {z_t.device}")
    _check("mask_fuse", z_h.device == z_t.device, f"z_h is on {z_h.device}, z_t on {z_t.device}")


def check_mask_fuse_out(z_t, out) -> None:
    _check(
        "mask_fuse",
        out.shape == z_t.shape and out.dtype == z_t.dtype and out.device == z_t.device and out.is_contiguous(),
        f"out must be a contiguous {z_t.dtype} tensor of shape {list(z_t.shape)} on {z_t.device}, got "
        f"{'' if out.is_contiguous() else 'non-contiguous '}{out.dtype} {list(out.shape)} on {out.device}",
    )


def mask_fuse_reference(z_t, z_h, m_s, m_g, m_r) -> torch.Tensor:
    """Eq. 7-12 as the select the kernel computes: per pixel, the tail vector where
    ``(m_s != m_g) ? m_s : m_r``, else the head vector. Masks are 0/1 (any dtype, nonzero =
    1) Tensor[B, H, W], broadcast over channels. For finite inputs this equals the formula
    (``mask_fuse_formula``); unlike the formula it never mixes a NaN/inf of the unpicked
    vector into the output."""
    check_mask_fuse(z_t, z_h, m_s, m_g, m_r)
    s, g, r = m_s != 0, m_g != 0, m_r != 0
    pick_t = torch.where(s != g, s, r)
    return torch.where(pick_t[:, None], z_t, z_h)


def mask_fuse_formula(z_t, z_h, m_s, m_g, m_r) -> torch.Tensor:
    """Eq. 7-12 of the paper literally, term by term (the test oracle and the 'literal eager'
    benchmark peer)."""
    ms, mg, mr = (m.to(z_t.dtype)[:, None] for m in (m_s, m_g, m_r))
    z_r = z_t * mr + z_h * (1 - mr)  # (8)
    z_r_tilde = z_r * (1 - mg - ms + 2 * mg * ms)  # (9)
    z_t_tilde = z_t * ms * (1 - mg)  # (10)
    z_h_tilde = z_h * mg * (1 - ms)  # (11)
    return z_h_tilde + z_t_tilde + z_r_tilde  # (12)
