"""Loading weights and checkpoints without running code from the file.

A ``.pt``/``.pth``/``.bin`` file is a pickle: ``torch.load(weights_only=False)`` (what
torch-fidelity and torchxrayvision call) runs whatever the file asks for. Every file ltbench
reads, its own and its dependencies' (torch-fidelity's Inception, torchxrayvision's DenseNet),
goes through here instead: ``torch.load(weights_only=True)``, which builds tensors and plain
containers only, and a refused file is one ``ValueError`` naming it.

Errors are ``ValueError`` (the CLIs print them as one line): an empty or truncated file, a
file that asks to run code (the error names the global it wanted), or one that is not the
expected kind (a state dict, a checkpoint dict).
"""

import os
import pickle
import tarfile
import zipfile

import torch


def _reason(exc: BaseException) -> str:
    """One line of why torch refused a file (its messages run over several paragraphs)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for key in ("GLOBAL", "Unsupported", "WeightsUnpickler error"):
        hit = [ln for ln in lines if key in ln]
        if hit:
            return hit[0]
    return lines[0] if lines else type(exc).__name__


def _check_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes): a write that never finished? Delete it")


def load_checkpoint(path: str, what: str = "checkpoint", safe_globals=None):
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only
    (``safe_globals``: extra ``(class, "module.Name")`` stand-ins, see :func:`load_module_tensors`).
    Raises ``FileNotFoundError`` or a one-line ``ValueError`` naming ``path`` and what is wrong."""
    _check_file(path, what)
    try:
        if safe_globals:
            with torch.serialization.safe_globals(list(safe_globals)):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{what} {path} was refused: it is not plain tensors and containers, and loading it would run code from the file ({_reason(exc)})") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"{what} {path} is truncated or not a torch file ({type(exc).__name__}: {_reason(exc)})") from None


def load_state_dict_file(path: str, what: str = "weights file") -> dict:
    """A state dict (``{name: Tensor}``) from ``path``, loaded weights-only."""
    state = load_checkpoint(path, what)
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{what} {path} is not a state dict (a mapping of parameter names to tensors), got {type(state).__name__}")
    return state


class _ModuleStandIn:
    """Stands in for an ``nn.Module`` class while a whole pickled model is read weights-only:
    it only records the state the pickle gives it (its parameters, buffers and submodules),
    so no class of the file's choosing is constructed and no method of it runs."""

    dump_patches = False  # what torch's legacy loader asks of a pickled module class

    def __init__(self, *args, **kwargs):  # a REDUCE of the class: its arguments are ignored
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}


def _pickle_globals(path: str) -> set:
    """Every ``module.name`` global the pickles of a torch file name, read without unpickling
    (pickletools): the zip format's ``data.pkl``, or the legacy format's leading pickles
    (magic number, protocol, system info, the object)."""
    import io
    import pickletools

    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    raise ValueError(f"weights file {path} is a zip file without data.pkl: not a torch checkpoint")
                streams = [io.BytesIO(z.read(name))]
                count = 1
        else:
            f.seek(0)
            streams, count = [f], 4
        names, strings = set(), []
        try:
            for stream in streams:
                for _ in range(count):
                    for op, arg, _ in pickletools.genops(stream):
                        if op.name == "GLOBAL":
                            names.add(arg.replace(" ", "."))
                        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                            strings.append(arg)
                        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                            names.add(f"{strings[-2]}.{strings[-1]}")
        except (ValueError, EOFError) as exc:
            raise ValueError(f"weights file {path} is truncated or not a torch file ({exc})") from None
    return names


def _module_globals(path: str, allowed_prefixes) -> list:
    """Stand-ins for the globals of a whole-model checkpoint that are ``nn.Module`` classes
    under ``allowed_prefixes``; every other global is left to weights_only (which refuses it
    unless it is one of torch's own safe ones)."""
    import importlib

    names = _pickle_globals(path)
    out = []
    for name in names:
        if not name.startswith(tuple(allowed_prefixes)):
            continue  # left to weights_only: refused, with the global named
        module, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            obj = None
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            out.append((_ModuleStandIn, name))
    return out


def _flatten(stand_in: _ModuleStandIn, prefix: str, out: dict) -> None:
    state = stand_in.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for key in ("_parameters", "_buffers"):
        for name, t in (state.get(key) or {}).items():
            if isinstance(t, torch.Tensor) and name not in skip:
                out[prefix + name] = t
    for name, sub in (state.get("_modules") or {}).items():
        if isinstance(sub, _ModuleStandIn):
            _flatten(sub, f"{prefix}{name}.", out)


def _safe_globals() -> dict:
    """What ``weights_only`` lets a pickle name (torch's tensor and storage rebuilders, plain
    containers), by name."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return dict(_get_allowed_globals())
    except (ImportError, AttributeError):  # a torch without it: the few a state dict needs
        import collections

        out = {"collections.OrderedDict": collections.OrderedDict, "builtins.set": set, "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2, "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter}
        out.update({f"torch.{n}": getattr(torch, n) for n in dir(torch) if n.endswith("Storage")})
        return out


def _legacy_pickle_module(allowed_prefixes):
    """A pickle module for ``torch.load`` of the legacy (pre-zip) format, which
    ``weights_only`` cannot read when it holds a whole model (it records the classes' source):
    its unpickler resolves only what ``weights_only`` allows, plus stand-ins for the
    ``nn.Module`` classes under ``allowed_prefixes``; any other global is refused, so nothing
    of the file's choosing is called (Python's documented "restricting globals")."""
    import importlib
    import types

    allowed = _safe_globals()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            module = {"__builtin__": "builtins"}.get(module, module)
            full = f"{module}.{name}"
            if full in allowed:
                return allowed[full]
            if full.startswith(tuple(allowed_prefixes)):
                try:
                    obj = getattr(importlib.import_module(module), name)
                except (ImportError, AttributeError):
                    obj = None
                if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
                    return _ModuleStandIn
            raise pickle.UnpicklingError(f"unsupported GLOBAL {full}: refused (it could run code)")

    def load(f, **kwargs):
        return Unpickler(f, **kwargs).load()

    return types.SimpleNamespace(Unpickler=Unpickler, load=load, __name__="ltbench_restricted_pickle")


def load_module_tensors(path: str, allowed_prefixes=("torch.nn.modules.",), what: str = "weights file") -> dict:
    """The state dict of a WHOLE pickled ``nn.Module`` (``torch.save(model)``, e.g.
    torchxrayvision's DenseNet weights), read without running code from it: every module class
    under ``allowed_prefixes`` is replaced by a stand-in that records its tensors, anything else
    the file names and ``weights_only`` would refuse is refused. Zip files load with
    ``weights_only=True``; legacy files through a restricted unpickler. Load the result into a
    freshly built model with ``load_state_dict``."""
    import warnings

    _check_file(path, what)
    with open(path, "rb") as f:
        legacy = not zipfile.is_zipfile(f)
    if legacy:
        try:
            with warnings.catch_warnings():  # "source code of class ... has changed": the stand-in's, by design
                warnings.simplefilter("ignore", torch.serialization.SourceChangeWarning)
                obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_legacy_pickle_module(allowed_prefixes))
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{what} {path} was refused: loading it would run code from the file ({_reason(exc)})") from None
        except (EOFError, RuntimeError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, tarfile.TarError) as exc:
            raise ValueError(f"{what} {path} is truncated or not a torch file ({type(exc).__name__}: {_reason(exc)})") from None
    else:
        obj = load_checkpoint(path, what, safe_globals=_module_globals(path, allowed_prefixes))
    if not isinstance(obj, _ModuleStandIn):
        raise ValueError(f"{what} {path} is not a pickled model, got {type(obj).__name__}")
    out: dict = {}
    _flatten(obj, "", out)
    if not out:
        raise ValueError(f"{what} {path} holds a model without tensors")
    return out


def check_pickle_file(path: str, what: str = "weights file") -> None:
    """Refuse a pickle-based weights file whose pickle names anything ``weights_only`` would not
    load (a function or class that could run code), without loading it: only its globals are
    read (cheap even for a multi-GB file). One-line ``ValueError`` naming the file and the
    globals."""
    _check_file(path, what)
    unsafe = sorted(_pickle_globals(path) - set(_safe_globals()) - {"__builtin__.set"})
    if unsafe:
        raise ValueError(f"{what} {path} was refused: its pickle names {unsafe[:3]}, which loading would call (only tensors and plain containers are accepted; prefer .safetensors)")


def check_model_folder(folder: str) -> None:
    """:func:`check_pickle_file` on every pickle-based weights file diffusers or transformers
    may read from ``folder`` (a diffusers pipeline or one of its components:
    ``diffusion_pytorch_model*.bin``, ``pytorch_model*.bin``), before they read any of them.
    Other files (``training_args.bin``, optimiser states) are never loaded and not checked."""
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if name.endswith(".bin") and "pytorch_model" in name:
                check_pickle_file(os.path.join(root, name))


__all__ = ["check_model_folder", "check_pickle_file", "load_checkpoint", "load_module_tensors", "load_state_dict_file"]
