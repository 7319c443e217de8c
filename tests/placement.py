"""A device double: runs CPU code as if it ran on a second device, so a tensor left on the CPU
fails on a machine without a GPU, the way it fails on one.

Inside ``DeviceDouble()`` the device ``torch.device("meta")`` stands for "the device". Nothing
ever runs on meta: a factory called with ``device=meta``, ``t.to(meta)`` and
``module.to(meta)`` compute on the CPU, and the double tags the results as on the device; every
other tensor (made without ``device=``, by ``torch.from_numpy``, by ``.cpu()``, or before the
double was entered) counts as on the CPU. Each torch call is then checked as CUDA checks it:

* a call mixing device tensors with CPU tensors raises ``DevicePlacementError``, except 0-dim
  CPU tensors (CUDA takes those as scalars), index tensors of ``x[idx]`` / ``x[idx] = v``
  (CUDA accepts CPU indices) and ``copy_`` (a transfer);
* ``.numpy()`` of a device tensor raises (CUDA tensors have no NumPy view);
* ``t.device`` of a device tensor says ``meta``, so code that reads a tensor's device and makes
  tensors there (``torch.zeros(..., device=x.device)``) follows it like on a GPU; results
  inherit the device of their inputs, gradients that of their parameter.

It is a ``TorchFunctionMode``, so it sees the Python-level torch calls of the code under test
and of the libraries it calls (torch.optim, pytorch-grad-cam), not what happens inside C++
kernels: it catches placement, not numerics.
"""

import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakTensorKeyDictionary

FAKE = torch.device("meta")
CPU, DEV = "cpu", "device"

FACTORIES = {
    torch.zeros, torch.ones, torch.empty, torch.full, torch.rand, torch.randn, torch.randint,
    torch.randperm, torch.arange, torch.tensor, torch.as_tensor, torch.eye, torch.linspace,
    torch.logspace, torch.empty_strided, torch.normal, torch.scalar_tensor,
}  # fmt: skip
# the device of their result follows their input unless device= says otherwise
LIKE = {torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like, torch.randn_like, torch.randint_like}


# calls that take tensors of two devices on CUDA too: a copy between devices, Module.to()'s type check
TRANSFERS = {torch.Tensor.copy_, torch._has_compatible_shallow_copy_type}
# calls about one tensor whose other arguments are bookkeeping (deepcopy's memo of copies made so far)
SELF_ONLY = {torch.Tensor.__deepcopy__, torch.Tensor.__reduce_ex__}


class DevicePlacementError(AssertionError):
    """A CPU tensor met a device tensor (or a device tensor was read as NumPy)."""


def _tensors(x, out):
    if isinstance(x, torch.Tensor):
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _tensors(v, out)
    elif isinstance(x, dict):
        for v in x.values():
            _tensors(v, out)
    return out


def _where() -> str:
    """The innermost frames of ltbench (or of the test) that made the call."""
    frames = [f for f in traceback.extract_stack()[:-3] if "/ltbench/" in f.filename or "/baselines/" in f.filename or "/tests/test_" in f.filename]
    return " <- ".join(f"{f.filename.rsplit('/', 2)[-2]}/{f.filename.rsplit('/', 1)[-1]}:{f.lineno} ({f.line})" for f in reversed(frames[-3:]))


class DeviceDouble(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.tags = WeakTensorKeyDictionary()
        self.calls = 0  # torch calls checked
        self.device_results = 0  # tensors the double tagged as on the device
        self._real = 0  # > 0: report real devices (inside torch.save)

    def __enter__(self):
        # nn.Parameter(data) (and so copy.deepcopy of a module) wraps data through
        # Tensor._make_subclass, which no TorchFunctionMode sees: the new Parameter takes its
        # data's tag here
        self._make_subclass = torch.Tensor.__dict__.get("_make_subclass")
        original = torch.Tensor._make_subclass
        tags = self.tags

        def make_subclass(cls, data, *a, **k):
            out = original(cls, data, *a, **k)
            if data in tags:
                tags[out] = tags[data]
            return out

        torch.Tensor._make_subclass = staticmethod(make_subclass)
        # torch.save pickles a tensor by its device ("meta" would be written without data): it
        # must see where the data really is, as it does on a GPU
        self._save = torch.save

        def save(*a, **k):
            self._real += 1
            try:
                return self._save(*a, **k)
            finally:
                self._real -= 1

        torch.save = save
        return super().__enter__()

    def __exit__(self, *exc):
        torch.save = self._save
        if self._make_subclass is None:
            del torch.Tensor._make_subclass
        else:
            torch.Tensor._make_subclass = self._make_subclass
        return super().__exit__(*exc)

    # ---- tags -------------------------------------------------------------------------
    def tag(self, t: torch.Tensor) -> str:
        return self.tags.get(t, CPU)

    def on_device(self, t: torch.Tensor) -> bool:
        return self.tag(t) == DEV

    def _set(self, result, tag: str):
        for t in _tensors(result, []):
            self.tags[t] = tag
            self.device_results += tag == DEV
        return result

    def _fail(self, what: str):
        raise DevicePlacementError(f"{what} [at {_where()}]")

    # ---- the check ----------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        self.calls += 1
        owner = getattr(func, "__self__", None)
        if owner is torch.Tensor.device and getattr(func, "__name__", "") == "__get__":
            return FAKE if self.on_device(args[0]) and not self._real else func(*args, **kwargs)
        if owner is torch.Tensor.is_cpu and getattr(func, "__name__", "") == "__get__":
            return not self.on_device(args[0])
        if owner is torch.Tensor.grad and getattr(func, "__name__", "") == "__get__":
            g = func(*args, **kwargs)
            return g if g is None else self._set(g, self.tag(args[0]))  # autograd made it where the parameter is
        if owner is torch.Tensor.data and getattr(func, "__name__", "") == "__set__":
            func(*args, **kwargs)
            self.tags[args[0]] = self.tag(args[1])  # Module.to(): param.data = moved copy
            return None
        if func is torch.Tensor.numpy and self.on_device(args[0]):
            self._fail(f".numpy() of a tensor on the device (shape {list(args[0].shape)}): copy it to the CPU first")
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            return self._move(func, args, kwargs)
        if "device" in kwargs and kwargs["device"] is not None:
            dest = DEV if torch.device(kwargs["device"]) == FAKE else CPU
            if dest == DEV:
                kwargs["device"] = "cpu"
            return self._set(func(*args, **kwargs), dest)
        if func in FACTORIES:
            src = _tensors((args, kwargs), [])
            return self._set(func(*args, **kwargs), self.tag(src[0]) if src else CPU)
        if func in SELF_ONLY:
            return self._set(func(*args, **kwargs), self.tag(args[0]))  # copy.deepcopy / pickling of one tensor
        if func in TRANSFERS:
            return func(*args, **kwargs)  # a transfer, or a question about types: dst keeps its device
        checked = _tensors((args[:1], args[2:]), []) if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) else _tensors((args, kwargs), [])
        on_dev = [t for t in checked if self.on_device(t)]
        on_cpu = [t for t in checked if not self.on_device(t) and t.dim() > 0]
        if on_dev and on_cpu:
            name = getattr(func, "__qualname__", getattr(func, "__name__", str(func)))
            self._fail(f"{name}: CPU tensor(s) {[list(t.shape) for t in on_cpu]} and device tensor(s) {[list(t.shape) for t in on_dev]} in one call (a tensor made without device= or not moved)")
        result = func(*args, **kwargs)
        if on_dev or any(self.on_device(t) for t in checked):
            return self._set(result, DEV)
        return self._set(result, CPU)

    def _move(self, func, args, kwargs):
        t = args[0]
        if func is torch.Tensor.cpu:
            dest, rest = CPU, {}
        elif func is torch.Tensor.cuda:
            dest, rest = DEV, {"non_blocking": kwargs.get("non_blocking", False)}
        else:
            other = args[1] if len(args) > 1 and isinstance(args[1], torch.Tensor) else kwargs.get("other")
            if isinstance(other, torch.Tensor):
                dest, rest = self.tag(other), {"dtype": other.dtype}
            else:
                device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args[1:], **{k: v for k, v in kwargs.items() if k != "copy"})
                if device is None:  # a dtype or layout change: stays where it is
                    return self._set(func(*args, **kwargs), self.tag(t))
                dest = DEV if device == FAKE else CPU
                rest = {"dtype": dtype, "non_blocking": non_blocking}
                if memory_format is not None:
                    rest["memory_format"] = memory_format
        if dest == self.tag(t) and t.device.type == "cpu":
            res = t.to(**{k: v for k, v in rest.items() if v is not None})
            return self._set(res, dest) if res is not t else res
        # a transfer: a new tensor, as a copy between devices makes
        return self._set(t.to("cpu", copy=True, **{k: v for k, v in rest.items() if v is not None}), dest)


def run_on_double(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` inside a fresh double; returns (result, double). ``torch.from_numpy``
    is not a torch function the mode sees: its tensors are untagged, i.e. on the CPU, which is
    where it makes them."""
    double = DeviceDouble()
    with double:
        out = fn(*args, **kwargs)
    return out, double
