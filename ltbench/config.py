"""Typed configs -> command-line options, so the CLI has no second copy of any default.

Each field of a frozen config dataclass becomes ``--field-name`` with the field's default and
type; its help text is the field's ``metadata["help"]``, written with ``opt(default, help)``."""

import argparse
import dataclasses
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


def opt(default, help: str):
    """A config field with its command-line help: ``steps: int = opt(75, "sampling steps")``.
    The help lives in the field's metadata, where ``add_config_args`` reads it."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use an immutable default (tuple) for a config field")
    return dataclasses.field(default=default, metadata={"help": help})
