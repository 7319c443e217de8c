"""Atomic writes: a reader (or a resumed run) never sees a half-written file.

Each write goes to a temporary file in the destination's folder, is flushed and fsync'ed,
then renamed over the destination (rename is atomic on POSIX within one filesystem).
Temporary files are named ``.tmp-<host>-<pid>-...``: a run killed with SIGKILL leaves its
temporary files behind, and the next run's ``clean_stale_tmp`` removes those whose writer
process is gone (never a live writer's, so two runs can share a folder)."""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time

TMP_PREFIX = ".tmp-"
_FOREIGN_TMP_AGE_S = 7 * 24 * 3600  # another host's temporary file: removed only when this old


def _tmp_prefix() -> str:
    host = socket.gethostname().replace("-", "_") or "host"
    return f"{TMP_PREFIX}{host}-{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path next to ``path``; on clean exit it replaces ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(), suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: honour the umask like open() would
        os.replace(tmp, path)
    except OSError as exc:
        raise_named(exc, path, replace=tmp)  # the destination, not the temporary file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def raise_named(exc: OSError, path: str, replace: str | None = None):
    """Re-raise ``exc``; a full disk or quota (which numpy's and the file object's writes
    report without a file name) as ``OSError(ENOSPC, ..., path)``, so the one-line error says
    where (also when it names ``replace``, a temporary file standing for ``path``)."""
    if exc.errno in DISK_FULL and (not exc.filename or exc.filename == replace):
        raise OSError(exc.errno, os.strerror(exc.errno), path) from exc
    raise exc


def reserve_space(path: str, size: int, start: int = 0) -> None:
    """Allocate the blocks of bytes [start, size) of the existing file ``path`` now, so that a
    full disk is an ``OSError(ENOSPC)`` naming ``path`` here rather than a SIGBUS when a page of
    a memory map of the file is first written (a sparse file's pages have no blocks yet)."""
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), start, max(0, size - start))
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise_named(exc, path)
        # no fallocate on this filesystem: write the zeros through ordinary file I/O
        try:
            f.seek(start)
            chunk = bytes(1 << 20)
            left = size - start
            while left > 0:
                left -= f.write(chunk[: min(left, len(chunk))])
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:
            raise_named(exc, path)


def open_memmap_reserved(path: str, dtype, shape):
    """``np.lib.format.open_memmap(path, "w+", dtype, shape)`` with every data block reserved
    on disk first (:func:`reserve_space`): writes through the map can no longer hit a full disk."""
    import numpy as np

    try:
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
    except OSError as exc:
        raise_named(exc, path)
    start = arr.offset
    del arr  # unmapped before the blocks are reserved and the file is mapped again
    reserve_space(path, os.path.getsize(path), start)
    return np.lib.format.open_memmap(path, mode="r+")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (identities of weights and label files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_tmp(root: str, recursive: bool = True) -> list[str]:
    """Remove the temporary files of ``atomic_path`` left under ``root`` by writers that are gone
    (killed runs): this host's files whose process no longer exists, other hosts' files older
    than a week. Returns the removed paths."""
    removed = []
    if not os.path.isdir(root):
        return removed
    me = socket.gethostname().replace("-", "_") or "host"
    walker = os.walk(root) if recursive else [(root, [], os.listdir(root))]
    for dirpath, _, files in walker:
        for name in files:
            if not name.startswith(TMP_PREFIX):
                continue
            path = os.path.join(dirpath, name)
            parts = name[len(TMP_PREFIX) :].split("-")
            try:
                host, pid = parts[0], int(parts[1])
            except (IndexError, ValueError):  # an older ltbench's temporary file: no owner recorded
                host, pid = None, None
            try:
                if host == me and pid is not None:
                    stale = pid != os.getpid() and not pid_alive(pid)
                else:
                    stale = time.time() - os.path.getmtime(path) > (_FOREIGN_TMP_AGE_S if host else 3600)
                if stale:
                    os.unlink(path)
                    removed.append(path)
            except FileNotFoundError:
                continue
    return removed


def save_figure(fig, path: str, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG at ``path`` (folders made, written atomically: a reader
    never sees half a file) and close it."""
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


# ---- output folders: only ltbench's are ever replaced -----------------------------------
OUTPUT_MARKER = ".ltbench-output.json"


def mark_output(folder: str, kind: str) -> None:
    """Record in ``folder`` that ltbench wrote it (``kind``: ``phantom``, ``image-folder``,
    ``latent-store``, ``prior``, ...): the one evidence ``--overwrite`` accepts for replacing it."""
    os.makedirs(folder, exist_ok=True)
    atomic_write_json(os.path.join(folder, OUTPUT_MARKER), {"written_by": "ltbench", "kind": kind})


def output_kind(folder: str) -> str | None:
    """The ``kind`` of ltbench output ``folder`` holds by its marker, or None."""
    try:
        with open(os.path.join(folder, OUTPUT_MARKER)) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    return m.get("kind") if isinstance(m, dict) and m.get("written_by") == "ltbench" and isinstance(m.get("kind"), str) else None


def _ours(folder: str, legacy=None) -> bool:
    """``folder`` is empty, carries ltbench's marker, or is recognised by ``legacy(folder)`` (the
    format file of an output written before markers existed, e.g. a phantom's phantom.json)."""
    if not os.listdir(folder):
        return True
    return output_kind(folder) is not None or bool(legacy and legacy(folder))


def check_replaceable(out: str, overwrite: bool, legacy=None, option: str = "--out") -> bool:
    """Refuse, before any work, to write to ``out`` unless it is absent, or ``overwrite`` is set
    and ``out`` is a folder ltbench wrote (:func:`mark_output`; or empty; or ``legacy``).
    Returns whether ``out`` exists (and will be replaced by :func:`swap_into_place`)."""
    if not os.path.lexists(out):
        return False
    if os.path.islink(out) or not os.path.isdir(out):
        raise FileExistsError(f"{option} {out} is a file or link, not an ltbench output folder; choose another path (--overwrite never deletes it)")
    if not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite (overwrite=True) to replace it, or choose another {option}")
    if not _ours(out, legacy):
        raise FileExistsError(f"--overwrite refuses to replace {out}: it holds files and no {OUTPUT_MARKER}, so ltbench did not write it; remove it yourself or choose another {option}")
    return True


def swap_into_place(ready: str, out: str, legacy=None) -> None:
    """Put the finished folder ``ready`` (a sibling of ``out``) at ``out``. An existing ``out``
    (checked again: ours) is renamed aside first and deleted only once ``ready`` is in place,
    so a failure at any point leaves the old output or the new one, never neither."""
    if not os.path.lexists(out):
        os.rename(ready, out)
        return
    check_replaceable(out, True, legacy)
    parent, name = os.path.split(os.path.abspath(out).rstrip(os.sep))
    old = os.path.join(parent, f"{_tmp_prefix()}{name}.old")
    os.rename(out, old)
    try:
        os.rename(ready, out)
    except OSError:
        os.rename(old, out)  # put the old output back: nothing lost
        raise
    shutil.rmtree(old)


def claim_partial(partial: str, kind: str, legacy=None) -> None:
    """Make ``partial`` (the sibling a folder is built in) ours: create it with the marker, or
    refuse an existing one that ltbench did not write (it is reused or deleted later)."""
    if os.path.lexists(partial) and (os.path.islink(partial) or not os.path.isdir(partial) or not _ours(partial, legacy)):
        raise FileExistsError(f"{partial} exists and was not written by ltbench (no {OUTPUT_MARKER}); remove it or choose another --out")
    mark_output(partial, kind)


# ---- cached stages: a rerun never mixes inputs --------------------------------------------
class StaleStageError(ValueError):
    """A cached stage in an output folder was computed from other inputs than this run's."""


def stage_inputs_path(folder: str, stage: str) -> str:
    return os.path.join(folder, f"{stage}.inputs.json")


def file_identity(path: str) -> dict:
    """What identifies an input file in a stage fingerprint: absolute path, size, SHA-256."""
    return {"path": os.path.abspath(path), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def _flat(d, prefix=""):
    out = {}
    for k, v in (d.items() if isinstance(d, dict) else ()):
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _short(v) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def write_stage_inputs(folder: str, stage: str, inputs: dict) -> None:
    """Record the fingerprint ``inputs`` (a JSON-able dict: paths, file identities, settings)
    of the cached ``stage`` in ``folder`` (``STAGE.inputs.json``). Write it once the stage's
    files are complete."""
    atomic_write_json(stage_inputs_path(folder, stage), {"stage": stage, "inputs": json.loads(json.dumps(inputs, default=str))})


def check_stage_inputs(folder: str, stage: str, inputs: dict, mismatch: str = "raise") -> bool:
    """Whether the cached ``stage`` in ``folder`` may be reused for ``inputs``.

    True: its fingerprint matches. False: no fingerprint (not cached, or cached by an ltbench
    that wrote none): compute the stage, then :func:`write_stage_inputs`. A fingerprint that
    differs raises :class:`StaleStageError` naming every input that differs (old -> new), or
    with ``mismatch="recompute"`` is deleted (a crash mid-recompute then leaves no stale
    fingerprint) and False returned."""
    if mismatch not in ("raise", "recompute"):
        raise ValueError(f"mismatch must be 'raise' or 'recompute', got {mismatch!r}")
    path = stage_inputs_path(folder, stage)
    try:
        with open(path) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        saved = None
    new = json.loads(json.dumps(inputs, default=str))
    old = saved.get("inputs") if isinstance(saved, dict) else None
    if old == new:
        return True
    if mismatch == "recompute":
        os.unlink(path)
        return False
    if not isinstance(old, dict):
        raise StaleStageError(f"{path} is corrupt; delete it (and the stage's files) to recompute")
    a, b = _flat(old), _flat(new)
    diff = [f"{k} {_short(a.get(k))} -> {_short(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    raise StaleStageError(f"the cached {stage} in {folder} was made from other inputs ({'; '.join(diff)}); choose another --out, or delete {folder} to recompute")
