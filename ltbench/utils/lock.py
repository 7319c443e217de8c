"""A lock file per unit of work, so processes that share an output folder (two runs started
at once, torchrun ranks, a Slurm array) never compute the same thing twice.

The lock is a file created with O_CREAT | O_EXCL holding its owner (host, pid). A lock whose
owner process is gone (same host, SIGKILLed run) is stale and is taken over; one held by
another host is never taken over automatically (the error names the file to delete)."""

import json
import os
import socket
import time

from ltbench.utils.io import pid_alive


def _host() -> str:
    return socket.gethostname() or "host"


class FileLock:
    def __init__(self, path: str):
        self.path = path
        self.held = False

    def owner(self) -> dict | None:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or garbage: treat as held

    def _stale(self, owner: dict | None) -> bool:
        if not owner:
            return False
        if owner.get("host") == _host() and isinstance(owner.get("pid"), int):
            return owner["pid"] != os.getpid() and not pid_alive(owner["pid"])
        return False

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; False if a live process holds it."""
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                owner = self.owner()
                if self._stale(owner):
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                return False
            with os.fdopen(fd, "w") as f:
                json.dump({"host": _host(), "pid": os.getpid(), "since": time.time()}, f)
            self.held = True
            return True
        return False

    def acquire(self, timeout: float | None = None, poll: float = 0.5) -> None:
        t0 = time.monotonic()
        while not self.try_acquire():
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise TimeoutError(f"lock {self.path} is held by {self.owner()}; if that process is gone (another machine), delete the file")
            time.sleep(poll)

    def release(self) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
