"""Typed configs -> command-line options, so the CLI has no second copy of any default.

Each field of a frozen config dataclass becomes ``--field-name`` with the field's default and
type; its help text is the ``# why`` comment written after the field in the source."""

import argparse
import dataclasses
import inspect
import re
import typing


def _field_comments(cls) -> dict[str, str]:
    comments = {}
    for klass in reversed(cls.__mro__):
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^=\n]*=[^#\n]*#\s*(.+)$", src, re.M):
            comments[m.group(1)] = m.group(2).strip()
    return comments


def add_config_args(parser: argparse.ArgumentParser, cls, exclude=(), group: str | None = None, defaults_none: bool = False) -> None:
    """Add one option per field of dataclass ``cls``. With ``defaults_none`` an option left
    out parses as None (a preset's value then applies; the help still shows the default)."""
    target = parser.add_argument_group(group or cls.__name__) if group is not False else parser
    comments = _field_comments(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        typ = hints[f.name]
        default = f.default
        parse_default = None if defaults_none else default
        opt = "--" + f.name.replace("_", "-")
        help_ = f"{comments.get(f.name, '')} (default: {default})"
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
