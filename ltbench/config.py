"""Typed configs -> command-line options, so the CLI has no second copy of any default.

Each field of a frozen config dataclass becomes ``--field-name`` with the field's default and
type; its help text is the field's ``metadata["help"]``, written with ``opt(default, help)``.

The field's valid values live there too (``opt(0.5, "...", ge=0, le=1)``): a config that
inherits :class:`Config` checks every field on construction (type, finite, bounds, choices),
whoever builds it (a command, a preset, a checkpoint's saved config, the Python API), so no
command can forget a check. Errors name the option as the command line spells it
(``--tau-h must be finite and in [0, 1], got nan``)."""

import argparse
import dataclasses
import math
import numbers
import typing

# Defaults shared by several configs and commands, written once here.
ROENTGEN_STEPS = 75  # sampling steps of RoentGen's model card: the paper's "RoentGEN@75"
ROENTGEN_GUIDANCE = 4.0  # classifier-free guidance of RoentGen's model card
REFINE_GUIDANCE = 3.5  # guidance of the authors' refinement code
PAPER_N_PER_CLASS = 1000  # generated samples per tail class (the authors' base_n)


def add_config_args(parser: argparse.ArgumentParser, cls, exclude=(), group: str | None = None, defaults_none: bool = False) -> None:
    """Add one option per field of dataclass ``cls``. With ``defaults_none`` an option left
    out parses as None (a preset's value then applies; the help still shows the default)."""
    target = parser.add_argument_group(group or cls.__name__) if group is not False else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        typ = hints[f.name]
        default = f.default
        parse_default = None if defaults_none else default
        opt = "--" + f.name.replace("_", "-")
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no help: declare it with opt(default, help)")
        help_ = f"{f.metadata['help']} (default: {default})"
        bounds = describe_bounds(f.metadata)
        if bounds:
            help_ += f" ({bounds})"
        if typ is bool:
            target.add_argument(opt, dest=f.name, action=argparse.BooleanOptionalAction, default=parse_default, help=help_)
        elif typ is tuple:  # comma-separated integers, e.g. --vae-channels 16,32,32
            target.add_argument(opt, dest=f.name, type=_int_tuple, default=parse_default, metavar="N,N,...", help=help_)
        else:
            target.add_argument(opt, dest=f.name, type=typ if typ in (int, float, str) else str, default=parse_default, help=help_)


def _int_tuple(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def config_from_args(cls, args: argparse.Namespace, **overrides):
    """Build ``cls`` from parsed options (fields missing from ``args`` keep their defaults)."""
    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    kw.update(overrides)
    return cls(**kw)


_BOUND_KEYS = ("ge", "gt", "le", "lt")


def opt(default, help: str, *, ge=None, gt=None, le=None, lt=None, choices=None, cli: str | None = None):
    """A config field with its command-line help and valid values:
    ``steps: int = opt(75, "sampling steps", ge=1, le=1000)``.

    ``ge``/``gt``/``le``/``lt``: bounds of a number (float fields are also required to be
    finite); ``choices``: the allowed values; ``cli``: how errors name the option when the
    command line does not spell it ``--field-name``. Everything lives in the field's metadata,
    where ``add_config_args`` and :func:`check_fields` read it."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use an immutable default (tuple) for a config field")
    meta = {"help": help}
    for key, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("choices", tuple(choices) if choices is not None else None), ("cli", cli)):
        if v is not None:
            meta[key] = v
    return dataclasses.field(default=default, metadata=meta)


def option_name(f: dataclasses.Field) -> str:
    """The option as the command line spells it: ``tau_h`` -> ``--tau-h`` (or the field's ``cli``)."""
    return f.metadata.get("cli") or "--" + f.name.replace("_", "-")


def describe_bounds(meta) -> str:
    """``"in [0, 1]"``, ``">= 1"``, ``"one of ('a', 'b')"`` or ``""`` from a field's metadata."""
    if "choices" in meta:
        return f"one of {meta['choices']}"
    lo = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["le"]) if "le" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1]}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {hi[1]}"
    return ""


def check_value(name: str, value, typ=float, *, ge=None, gt=None, le=None, lt=None, choices=None):
    """Check one option or API input; raise ``ValueError`` naming it (``name``, e.g.
    ``"--batch-size"``) with what is wrong. For values that are not config fields (the
    command-only options, API arguments). Returns ``value``."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("choices", tuple(choices) if choices is not None else None)) if v is not None}
    problem = _problem(value, typ, meta)
    if problem:
        raise ValueError(f"{name} must be {problem}, got {value!r}")
    return value


def _problem(value, typ, meta) -> str | None:
    """What ``value`` fails of type ``typ`` and the bounds/choices in ``meta``, or None."""
    want = describe_bounds(meta)
    if "choices" in meta:
        return None if value in meta["choices"] else want
    if typ is bool:
        return None if isinstance(value, bool) else "true or false"
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return "an integer" + (f" {want}" if want else "")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return "finite" + (f" and {want}" if want else "")
    elif typ is str:
        return None if isinstance(value, str) else "a string"
    else:
        return None
    ok = all(
        (
            "ge" not in meta or value >= meta["ge"],
            "gt" not in meta or value > meta["gt"],
            "le" not in meta or value <= meta["le"],
            "lt" not in meta or value < meta["lt"],
        )
    )
    if ok:
        return None
    return f"finite and {want}" if typ is float else want


def check_fields(obj) -> None:
    """Validate every field of config dataclass ``obj`` against its ``opt()`` metadata; raise
    ``ValueError`` naming the first bad one in command-line spelling."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, typ = getattr(obj, f.name), hints.get(f.name)
        if typ is tuple:  # comma-separated integers (--vae-channels 16,32,32): each one bounded
            if not isinstance(value, tuple) or not value:
                raise ValueError(f"{option_name(f)} must be a non-empty tuple of integers, got {value!r}")
            for v in value:
                problem = _problem(v, int, f.metadata)
                if problem:
                    raise ValueError(f"{option_name(f)} must hold integers {describe_bounds(f.metadata)}, got {value!r}")
            continue
        problem = _problem(value, typ, f.metadata)
        if problem:
            raise ValueError(f"{option_name(f)} must be {problem}, got {value!r}")


class Config:
    """Base of the config dataclasses: construction runs :func:`check_fields` before the
    class's own ``__post_init__`` (cross-field checks), so every field is validated from its
    ``opt()`` metadata wherever the config is built."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # the class's own cross-field checks, or those it inherits (never the wrapper itself)
        own = cls.__dict__.get("__post_init__", getattr(cls, "_own_post_init", None))
        cls._own_post_init = own

        def __post_init__(self):
            check_fields(self)
            if own is not None:
                own(self)

        __post_init__.__doc__ = own.__doc__ if own is not None else None
        cls.__post_init__ = __post_init__
