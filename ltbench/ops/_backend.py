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
    """``"fused"`` or ``"reference"``; saved with every result."""
    return "fused" if extension_available() else "reference"


def cpu_isa() -> str | None:
    """The copy of the CPU kernels in use: ``"avx2"`` (AVX2 + FMA, chosen at run time where the
    CPU has it), ``"base"`` (the build target's baseline, or ``LTBENCH_CPU_ISA=base``), or None
    without the extension. Both copies compute the same bits."""
    if not extension_available():
        return None
    import torch

    return torch.ops.ltbench.cpu_isa() if hasattr(torch.ops.ltbench, "cpu_isa") else None
