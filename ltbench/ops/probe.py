"""Build probe ``ltbench::probe_scale`` (out = x * alpha).

It exists so the packaging path of the compiled ops (TORCH_LIBRARY schema, CPU and CUDA
backends, fake kernel, autograd formula) is built and tested before the method's fused ops
arrive; those follow the same pattern."""

import torch

from ltbench.ops._backend import extension_available


def probe_scale_reference(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return x * alpha


def _register() -> bool:
    if not extension_available():
        return False

    @torch.library.register_fake("ltbench::probe_scale")
    def _fake(x, alpha):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _backward(ctx, grad):
        return torch.ops.ltbench.probe_scale(grad, ctx.alpha), None

    def _setup_context(ctx, inputs, output):
        ctx.alpha = inputs[1]

    torch.library.register_autograd("ltbench::probe_scale", _backward, setup_context=_setup_context)
    return True


_FUSED = _register()


def probe_scale(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``x * alpha`` through the compiled op when present. Tensor[...] -> Tensor[...]"""
    if _FUSED:
        return torch.ops.ltbench.probe_scale(x, float(alpha))
    return probe_scale_reference(x, alpha)
