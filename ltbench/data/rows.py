"""Arrays of images on disk, read a few rows at a time: what lets a stage work through a
dataset with memory bounded by its batch.

``RowFile`` opens a ``.npy`` file and reads the rows asked for with positioned reads
(``os.pread``), never mapping the file: pages of a memory map stay in the process's resident
set once touched, so streaming a memory-mapped split through a classifier would grow the peak
RSS with the dataset. ``RowWriter`` writes a ``.npy`` of known shape chunk by chunk, atomically.
``ConcatRows`` indexes two row sources as one (the real train images, then a row's generated
ones) without concatenating them.
"""

import os

import numpy as np

from ltbench.utils.io import raise_named


class RowFile:
    """Read-only rows of a C-ordered ``.npy`` file. ``f[i]``, ``f[a:b]`` (step 1), ``f[idx]``
    (an integer or boolean index array) and ``np.asarray(f)`` return fresh arrays."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"{path}: unsupported .npy format version {version}")
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or len(shape) < 1:
            raise ValueError(f"{path}: expected a C-ordered array with a row axis, got shape {shape} (fortran_order={fortran})")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if os.path.getsize(path) < expected:
            raise ValueError(f"{path} is truncated: {os.path.getsize(path)} bytes, its header promises {expected}")

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _read(self, start: int, count: int) -> np.ndarray:
        out = np.empty((count, *self.shape[1:]), self.dtype)
        if count:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                buf, want, got = memoryview(out.reshape(-1).view(np.uint8)), count * self.row_bytes, 0
                while got < want:
                    n = os.preadv(fd, [buf[got:]], self.offset + start * self.row_bytes + got)
                    if n <= 0:
                        raise OSError(f"{self.path}: short read at row {start}")
                    got += n
            finally:
                os.close(fd)
        return out

    def __getitem__(self, idx) -> np.ndarray:
        n = len(self)
        if isinstance(idx, (int, np.integer)):
            i = int(idx) + (n if idx < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"row {idx} out of range for {n} rows")
            return self._read(i, 1)[0]
        if isinstance(idx, slice):
            start, stop, step = idx.indices(n)
            if step != 1:
                return self[np.arange(start, stop, step)]
            return self._read(start, max(0, stop - start))
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        order = np.argsort(idx, kind="stable")  # ascending reads; runs of consecutive rows in one call
        k = 0
        while k < len(order):
            j = k
            while j + 1 < len(order) and idx[order[j + 1]] == idx[order[j]] + 1:
                j += 1
            out[order[k : j + 1]] = self._read(int(idx[order[k]]), j - k + 1)
            k = j + 1
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)


def _npy_header(shape: tuple, dtype: np.dtype) -> bytes:
    """A .npy v2.0 header of a fixed 256 bytes (space-padded), so the row count can be
    rewritten in place when fewer rows than announced were written."""
    d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.lib.format.dtype_to_descr(dtype), tuple(shape))
    body_len = 256 - 12  # magic (6) + version (2) + length (4) + body = 256, a multiple of 64
    if len(d) + 1 > body_len:
        raise ValueError(f"shape {shape} is too long for the header")
    return b"\x93NUMPY\x02\x00" + body_len.to_bytes(4, "little") + (d.ljust(body_len - 1) + "\n").encode("latin1")


class RowWriter:
    """Write up to ``shape[0]`` rows of ``shape[1:]`` and ``dtype`` to ``path`` as ``.npy``,
    chunk by chunk in row order (``write``); ``close()`` fixes the row count (``allow_fewer``:
    fewer rows than announced, e.g. unreadable images skipped) and renames the finished file
    into place, so ``path`` is absent or whole. As a context manager an exception leaves no
    file."""

    def __init__(self, path: str, shape: tuple, dtype, allow_fewer: bool = False):
        self.path, self.shape, self.dtype, self.allow_fewer = path, tuple(int(s) for s in shape), np.dtype(dtype), allow_fewer
        self.tmp = f"{path}.tmp.{os.getpid()}"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.f = open(self.tmp, "wb")
        self.f.write(_npy_header(self.shape, self.dtype))
        self.rows = 0

    def write(self, chunk) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:] or self.rows + len(chunk) > self.shape[0]:
            raise ValueError(f"chunk {chunk.shape} does not fit rows {self.rows}.. of {self.shape}")
        try:
            self.f.write(chunk.tobytes())
        except OSError as exc:
            raise_named(exc, self.path, replace=self.tmp)  # a full disk names the file
        self.rows += len(chunk)

    def close(self) -> str:
        if self.rows != self.shape[0]:
            if not self.allow_fewer:
                raise ValueError(f"{self.path}: wrote {self.rows} of {self.shape[0]} rows")
            self.f.seek(0)
            self.f.write(_npy_header((self.rows, *self.shape[1:]), self.dtype))
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
        except OSError as exc:
            raise_named(exc, self.path, replace=self.tmp)
        self.f.close()
        os.replace(self.tmp, self.path)
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            try:
                self.f.close()
            except OSError:
                pass  # flushing the buffer of a full disk fails again: the first error is the one to report
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


class ConcatRows:
    """Two row sources (``RowFile`` or arrays with the same row shape) indexed as one."""

    def __init__(self, first, second):
        if tuple(first.shape[1:]) != tuple(second.shape[1:]):
            raise ValueError(f"row shapes differ: {tuple(first.shape[1:])} and {tuple(second.shape[1:])}")
        self.first, self.second = first, second
        self.shape = (len(first) + len(second), *first.shape[1:])
        self.dtype = np.dtype(first.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(*idx.indices(len(self)))
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n1 = len(self.first)
        out = np.empty((len(idx), *self.shape[1:]), self.dtype)
        a = idx < n1
        if a.any():
            out[a] = self.first[idx[a]]
        if (~a).any():
            out[~a] = self.second[idx[~a] - n1]
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)


def read_to_rows(dataset, path: str, indices=None, progress: bool = False, desc: str = "read", workers: int | None = None) -> np.ndarray:
    """Read the items ``indices`` (default: all) of an image dataset (items ``(image
    Tensor[1, S, S] in [-1, 1], labels, index)``, e.g. ``CsvImageDataset`` with
    ``on_error="skip"``) through DataLoader workers into ``path`` as uint8 [M, S, S], chunk by
    chunk (an unreadable image is skipped: M <= the count asked for). Returns the labels
    uint8 [M, K] of the rows written, in order."""
    import torch
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from ltbench.data.csv_dataset import collate_skip_none

    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    size = dataset.image.size
    n_classes = len(dataset.classes)
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    loader = DataLoader(Subset(dataset, idx), batch_size=64, num_workers=workers, collate_fn=collate_skip_none)
    ys = []
    with RowWriter(path, (len(idx), size, size), np.uint8, allow_fewer=True) as w:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            if batch is None:  # every image of the batch was unreadable
                continue
            x, y, _ = batch
            w.write(((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy())  # [-1, 1] -> uint8
            ys.append(y.numpy().astype(np.uint8))
    return np.concatenate(ys) if ys else np.zeros((0, n_classes), np.uint8)


def is_row_source(x) -> bool:
    """A lazy row source (read on indexing), as opposed to an array held in memory."""
    return isinstance(x, (RowFile, ConcatRows))


__all__ = ["ConcatRows", "RowFile", "RowWriter", "is_row_source", "read_to_rows"]
