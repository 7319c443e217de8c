"""Where the method runs: one parser for the ``device`` argument of every stage, autocast
choices, and the loader settings that go with a device (``docs/gpu.md``).

``resolve_device`` is the only place a device string is interpreted, so ``--device cuda`` means
the same thing to iterated learning, CAMs, fusion, the prior and the metrics.
"""

import contextlib

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(device: "str | torch.device | None" = "auto") -> torch.device:
    """``"auto"`` (or None): this process's CUDA device when CUDA is available, else the CPU;
    ``"cpu"``; ``"cuda"`` (this process's current CUDA device: under torchrun the rank's own,
    set by ``init_distributed``); ``"cuda:N"``. A ``torch.device`` is checked the same way when
    it is a CPU or CUDA device and otherwise used as given (the tests run the method on a
    device double). Raises ValueError for any other string, for CUDA when torch sees no CUDA
    device, and for an index beyond the visible devices."""
    if device is None:
        device = "auto"
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        name = device.strip().lower()
        if name == "auto":
            return _current_cuda() if torch.cuda.is_available() else torch.device("cpu")
        if name != "cpu" and name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
            raise ValueError(f"device must be {DEVICE_CHOICES}, got {device!r}")
        dev = torch.device(name)
    else:
        raise TypeError(f"device must be a string ({DEVICE_CHOICES}) or a torch.device, got {type(device).__name__}")
    if dev.type != "cuda":
        return dev
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for CUDA, but torch sees no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}); use --device cpu or auto")
    if dev.index is None:
        return _current_cuda()
    if dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) are visible (CUDA_VISIBLE_DEVICES={_visible()})")
    return dev


def _current_cuda() -> torch.device:
    # an explicit index: pinned-memory, streams and the process group all mean this one device
    return torch.device("cuda", torch.cuda.current_device())


def _visible() -> str:
    import os

    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")


def loader_kwargs(device: torch.device) -> dict:
    """DataLoader settings for batches bound for ``device``: page-locked (pinned) host memory
    when it is a CUDA device, so ``.to(device, non_blocking=True)`` is an asynchronous copy the
    GPU overlaps with compute; nothing on the CPU (pinning there only costs a copy)."""
    return {"pin_memory": device.type == "cuda"}


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``, asynchronously from pinned memory (a no-op when it is already there)."""
    return t.to(device, non_blocking=True)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device: torch.device, allow_fp16: bool = True) -> "torch.dtype | None":
    """The autocast dtype of ``precision`` on ``device``, None for full float32.

    ``auto``: bfloat16 on a CUDA device that supports it, float32 everywhere else (the CPU's
    results stay bit-identical to float32 runs). ``bf16``/``fp16`` are honoured on any device
    (CPU autocast exists too, which is how the tests run this path without a GPU); ``fp16``
    only where ``allow_fp16`` (training: float16 gradients need a loss scaler, which iterated
    learning does not have; bfloat16 has float32's range and needs none)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if precision == "fp32":
        return None
    if precision == "fp16" and not allow_fp16:
        raise ValueError("precision 'fp16' is not supported here (float16 training needs a gradient scaler); use 'bf16' or 'fp32'")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: torch.device, dtype: "torch.dtype | None"):
    """``torch.autocast`` on ``device`` in ``dtype``, or a null context for float32 (and for
    device types autocast does not know, such as a test double)."""
    if dtype is None or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def no_autocast(device: torch.device):
    """Autocast switched off inside an autocast region: what must run in float32 (the channel
    softmax draw, the imitation BCE) runs in float32 whatever the caller enabled."""
    if device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def channels_last(device: torch.device) -> bool:
    """Whether convolutions run channels-last on ``device``: on CUDA (cuDNN's tensor-core
    kernels prefer NHWC, above all under autocast); never on the CPU, where it would change
    oneDNN's summation order and so the bits of today's CPU results."""
    return device.type == "cuda"


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for one without either."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
