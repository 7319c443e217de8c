"""Which implementation of the ops is active: the compiled extension or the references."""

import functools
import logging
import os

log = logging.getLogger("ltbench.ops")


@functools.lru_cache(maxsize=None)
def extension_available() -> bool:
    """True when ``ltbench._C`` imports (it registers the ``torch.ops.ltbench`` library).

    ``LTBENCH_DISABLE_EXTENSION=1`` forces the references, e.g. to time them against the
    kernels or to rule the extension out when debugging."""
    if os.environ.get("LTBENCH_DISABLE_EXTENSION", "") not in ("", "0"):
        log.info("ltbench ops backend: reference (LTBENCH_DISABLE_EXTENSION is set)")
        return False
    try:
        import ltbench._C  # noqa: F401
    except ImportError as exc:
        log.info("ltbench ops backend: reference (extension not built: %s)", exc)
        return False
    log.info("ltbench ops backend: fused (ltbench._C)")
    return True


def backend() -> str:
    """``"fused"`` or ``"reference"``: whether ``ltbench._C`` is loaded at all. Which
    implementation runs on a given device is ``backend_for(device)``."""
    return "fused" if extension_available() else "reference"


_METHOD_OPS = ("channel_sample", "imitation_bce", "imitation_bce_backward", "mask_fuse", "mask_fuse_backward")


@functools.lru_cache(maxsize=None)
def fused_on(device_type: str) -> bool:
    """True when ``ltbench._C`` has kernels of every method op for ``device_type`` ("cpu" or
    "cuda"): a build without nvcc has CPU kernels only, and CUDA tensors then go to the
    references instead of failing in the dispatcher."""
    if not extension_available() or device_type not in ("cpu", "cuda"):
        return False
    import torch

    key = "CPU" if device_type == "cpu" else "CUDA"
    return all(torch._C._dispatch_has_kernel_for_dispatch_key(f"ltbench::{op}", key) for op in _METHOD_OPS)


def backend_for(device) -> str:
    """Which implementation of the method's ops (``channel_sample``, ``imitation_bce``,
    ``mask_fuse``) runs on ``device`` (a torch.device or a string such as "cuda:0"):
    ``"fused-cuda"``, ``"fused-cpu"`` or ``"reference"``. Results record it."""
    import torch

    t = torch.device(device).type
    return f"fused-{t}" if fused_on(t) else "reference"


def cpu_isa() -> str | None:
    """The copy of the CPU kernels in use: ``"avx2"`` (AVX2 + FMA, chosen at run time where the
    CPU has it), ``"base"`` (the build target's baseline, or ``LTBENCH_CPU_ISA=base``), or None
    without the extension. Both copies compute the same bits."""
    if not extension_available():
        return None
    import torch

    return torch.ops.ltbench.cpu_isa() if hasattr(torch.ops.ltbench, "cpu_isa") else None
