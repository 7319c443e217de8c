"""What both command lines share (``ltbench`` and ``python -m ltbench.reproduce``): the error
policy and the common options.

Error policy: an expected failure (a missing or malformed file, a bad option value, an input
that cannot be used) ends the command with exit status 2 and ONE line on stderr,
``PROG: error: MESSAGE``, where the message names the file or option. Anything else is a bug
and keeps its traceback."""

import argparse
import logging
import sys

EXPECTED = (OSError, KeyError, ValueError, RuntimeError)


def one_line(exc: BaseException) -> str:
    """The message of an expected failure on one line (a KeyError's message unquoted)."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return " ".join(str(msg).split("\n")).replace("  - ", "- ").strip()


def fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def run_command(prog: str, func, args) -> int:
    """Call ``func(args)``; an expected failure becomes one line on stderr and exit status 2."""
    try:
        return func(args)
    except EXPECTED as exc:
        return fail(prog, one_line(exc))


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def parent(*names: str) -> argparse.ArgumentParser:
    """A parent parser holding the named common options, so each is declared once:
    ``quiet``, ``verbose``, ``overwrite``, ``device``, ``precision``."""
    p = argparse.ArgumentParser(add_help=False)
    for name in names:
        if name == "quiet":
            p.add_argument("--quiet", action="store_true", help="no progress bars")
        elif name == "verbose":
            p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
        elif name == "overwrite":
            p.add_argument("--overwrite", action="store_true", help="replace OUT when it holds an earlier ltbench output of another kind or config (never a folder ltbench did not write)")
        elif name == "device":
            p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N (default: auto)")
        elif name == "precision":
            p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"), help="auto = fp32 on CPU, bf16 on GPU")
        else:
            raise ValueError(f"no common option {name!r}")
    return p


__all__ = ["EXPECTED", "fail", "one_line", "parent", "run_command", "setup_logging"]
