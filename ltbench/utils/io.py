"""Atomic writes: a reader (or a resumed run) never sees a half-written file.

Each write goes to a temporary file in the destination's folder, is flushed and fsync'ed,
then renamed over the destination (rename is atomic on POSIX within one filesystem).
Temporary files are named ``.tmp-<host>-<pid>-...``: a run killed with SIGKILL leaves its
temporary files behind, and the next run's ``clean_stale_tmp`` removes those whose writer
process is gone (never a live writer's, so two runs can share a folder)."""

import contextlib
import hashlib
import json
import os
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
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
