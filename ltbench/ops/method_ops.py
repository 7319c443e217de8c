"""Public entry points of the method's ops. The method calls only these; they dispatch, by
the device of the input, to the fused kernels of ``ltbench._C`` when it has them for that
device (CPU kernels always, CUDA kernels when it was built with nvcc) and to the references
otherwise (``ltbench.ops.backend_for(device)`` says which). Arguments are checked here
(shapes, dtypes, devices: a ``ValueError`` naming the argument) whichever backend runs, so
errors are the same with and without the extension."""

import torch

from ltbench.ops._backend import extension_available, fused_on
from ltbench.ops.references import (
    channel_sample_reference,
    check_channel_sample,
    check_imitation_bce,
    check_mask_fuse,
    check_mask_fuse_out,
    imitation_bce_reference,
    mask_fuse_reference,
)


def _has(op: str) -> bool:
    return extension_available() and hasattr(torch.ops.ltbench, op)


def _register() -> bool:
    if not _has("mask_fuse"):
        return False
    lib = "ltbench::"

    @torch.library.register_fake(lib + "channel_sample")
    def _(logits, u):
        return logits.new_empty((logits.shape[0], logits.shape[2], logits.shape[3]), dtype=torch.int64)

    @torch.library.register_fake(lib + "imitation_bce")
    def _(logits, idx):
        return logits.new_empty(())

    @torch.library.register_fake(lib + "imitation_bce_backward")
    def _(grad, logits, idx):
        return torch.empty_like(logits, memory_format=torch.contiguous_format)

    @torch.library.register_fake(lib + "mask_fuse")
    def _(z_t, z_h, m_s, m_g, m_r):
        return torch.empty_like(z_t, memory_format=torch.contiguous_format)

    @torch.library.register_fake(lib + "mask_fuse.out")
    def _(z_t, z_h, m_s, m_g, m_r, *, out):
        return None

    @torch.library.register_fake(lib + "mask_fuse_backward")
    def _(grad, m_s, m_g, m_r):
        return torch.empty_like(grad, memory_format=torch.contiguous_format), torch.empty_like(grad, memory_format=torch.contiguous_format)

    def bce_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def bce_backward(ctx, grad):
        logits, idx = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True (double backward): the kernel's gradient has no derivative of
            # its own, so take the reference's, whose autograd graph is differentiable; the
            # first-order values are the same (test_ops_fused checks them)
            with torch.enable_grad():
                return torch.autograd.grad(imitation_bce_reference(logits, idx), logits, grad, create_graph=True)[0], None
        return torch.ops.ltbench.imitation_bce_backward(grad, logits, idx), None

    torch.library.register_autograd(lib + "imitation_bce", bce_backward, setup_context=bce_setup)

    def fuse_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[2:])

    def fuse_backward(ctx, grad):
        if torch.is_grad_enabled():  # double backward: the same routing, by differentiable torch ops
            m_s, m_g, m_r = (m != 0 for m in ctx.saved_tensors)
            pick_t = torch.where(m_s != m_g, m_s, m_r)[:, None]
            zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
            return torch.where(pick_t, grad, zero), torch.where(pick_t, zero, grad), None, None, None
        gt, gh = torch.ops.ltbench.mask_fuse_backward(grad, *ctx.saved_tensors)
        return gt, gh, None, None, None

    torch.library.register_autograd(lib + "mask_fuse", fuse_backward, setup_context=fuse_setup)
    return True


_FUSED = _register()  # the master switch (tests turn it off to run the references)
_FUSED_CPU = _FUSED and fused_on("cpu")
_FUSED_CUDA = _FUSED and fused_on("cuda")


def _fused(t: torch.Tensor) -> bool:
    """Whether ``t``'s device has fused kernels. Plain attribute reads, so torch.compile traces
    the choice as a constant; tensors of other devices (meta, a test double) take the references."""
    if not _FUSED:
        return False
    return _FUSED_CUDA if t.is_cuda else (_FUSED_CPU and t.device.type == "cpu")


def channel_sample(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw from softmax(logits) over channels. Tensor[B, C, H, W], Tensor[B, H, W]
    uniforms in [0, 1) -> int64[B, H, W]. Edge cases (both backends): u >= the total or NaN
    gives the last channel with p > 0; a NaN/+inf logit or an all -inf pixel gives a draw from
    NaN probabilities (channel 0 where no p > 0)."""
    if _fused(logits):
        check_channel_sample(logits, u)
        return torch.ops.ltbench.channel_sample(logits, u)
    return channel_sample_reference(logits, u)


def imitation_bce(student_logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Imitation loss (Eq. 2): mean BCE(softmax(student_logits), one_hot(idx)). -> scalar.
    NaN/inf logits give a NaN loss (and NaN gradients on the offending pixels) on both
    backends; callers check ``torch.isfinite`` (the IL loop stops with an error naming the step)."""
    if _fused(student_logits):
        check_imitation_bce(student_logits, idx, values=not torch.compiler.is_compiling())
        return torch.ops.ltbench.imitation_bce(student_logits, idx)
    return imitation_bce_reference(student_logits, idx)


def mask_fuse(z_t: torch.Tensor, z_h: torch.Tensor, m_s: torch.Tensor, m_g: torch.Tensor, m_r: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 7-12: fuse tail and head sparse vectors Tensor[B, C, H, W] under 0/1 masks
    Tensor[B, H, W] (class-specific M^S, class-generic M^G, random M^R). ``out``: a
    preallocated contiguous result (not differentiable), for loops that reuse a buffer."""
    check_mask_fuse(z_t, z_h, m_s, m_g, m_r)
    if out is not None:
        check_mask_fuse_out(z_t, out)  # both backends: a wrong dtype is an error, never a silent cast
    if _fused(z_t):
        if out is not None:
            torch.ops.ltbench.mask_fuse.out(z_t, z_h, m_s, m_g, m_r, out=out)
            return out
        return torch.ops.ltbench.mask_fuse(z_t, z_h, m_s, m_g, m_r)
    res = mask_fuse_reference(z_t, z_h, m_s, m_g, m_r)
    return res if out is None else out.copy_(res)
