"""The latent store: a dataset's VAE latents as sharded, memory-mapped ``.npy`` arrays.

Layout of a store folder::

    manifest.json            what the latents are (shape, dtype, VAE identity, preprocessing,
                             sample vs mean, scaling factor, dataset fingerprint) + progress
    labels.csv               the label table, one row per latent, in store order
    shards/ok-00000.npy      bool[m]: the image of each row was read (False = skipped, zeros)
    shards/sha256-00000.json SHA-256 of the shard's two files
    shards/latents-00000.npy float16|float32[m, C, H, W], written last: marks the shard done

Each shard is written to a temporary file and renamed, so a shard is either whole or absent;
an interrupted encode resumes at the first missing shard. Every shard's checksums are also
collected into the manifest (``shard_sha256``) when the store completes. A shard whose bytes
no longer match (truncated, bit-flipped) is reported by name when a reader first maps it, and
re-encoded by rerunning the same ``ltbench encode`` command (which verifies every shard it
finds). Readers memory-map the shards, so random access costs one page-in and RAM stays
bounded whatever the dataset size.
"""

import json
import os

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ltbench.utils.io import atomic_path, atomic_write_json, open_memmap_reserved, sha256_file

FORMAT = "ltbench-latents"
VERSION = 1
MANIFEST = "manifest.json"
LABELS = "labels.csv"
STORE_KIND = "latent-store"  # the output marker's kind


class StoreError(RuntimeError):
    """A latent store is missing, incomplete, corrupt or made with other settings."""


def shard_paths(root: str, s: int) -> tuple[str, str]:
    return (os.path.join(root, "shards", f"latents-{s:05d}.npy"), os.path.join(root, "shards", f"ok-{s:05d}.npy"))


def checksum_path(root: str, s: int) -> str:
    return os.path.join(root, "shards", f"sha256-{s:05d}.json")


def read_checksum(root: str, s: int) -> dict | None:
    try:
        with open(checksum_path(root, s)) as f:
            c = json.load(f)
        return c if isinstance(c, dict) and isinstance(c.get("latents"), str) and isinstance(c.get("ok"), str) else None
    except (OSError, ValueError):
        return None


def shard_checksum_problem(root: str, s: int, expected: dict | None = None) -> str | None:
    """None if shard ``s`` is whole (both files present and matching their SHA-256s), else what
    is wrong. ``expected`` defaults to the shard's own checksum file."""
    lat, ok = shard_paths(root, s)
    if not (os.path.exists(lat) and os.path.exists(ok)):
        return "missing"
    expected = expected or read_checksum(root, s)
    if expected is None:
        return "no checksum"
    for kind, path in (("ok", ok), ("latents", lat)):
        if sha256_file(path) != expected[kind]:
            return f"{os.path.basename(path)} does not match its SHA-256 (truncated or altered)"
    return None


def shard_done(root: str, s: int, verify: bool = True) -> bool:
    """Shard ``s`` is written; with ``verify`` also whole (its checksums match)."""
    if not verify:
        lat, ok = shard_paths(root, s)
        return os.path.exists(lat) and os.path.exists(ok)
    return shard_checksum_problem(root, s) is None


def read_manifest(root: str) -> dict:
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        raise StoreError(f"{root} is not a latent store (no {MANIFEST}); create one with `ltbench encode`")
    try:
        with open(path) as f:
            m = json.load(f)
    except ValueError as exc:
        raise StoreError(f"{path} is corrupt: {exc}") from exc
    if not isinstance(m, dict):
        raise StoreError(f"{path} is corrupt: a JSON {type(m).__name__}, not an object; recreate the store with `ltbench encode`")
    if m.get("format") != FORMAT:
        raise StoreError(f"{path} is not an ltbench latent store manifest (format={m.get('format')!r})")
    if m.get("version") != VERSION:
        raise StoreError(f"{path} has store version {m.get('version')}, this ltbench reads version {VERSION}")
    problems = []
    for key, ok in (
        ("n", isinstance(m.get("n"), int) and m["n"] >= 0),
        ("n_shards", isinstance(m.get("n_shards"), int) and m["n_shards"] >= 0),
        ("shard_size", isinstance(m.get("shard_size"), int) and m["shard_size"] >= 1),
        ("latent_shape", isinstance(m.get("latent_shape"), list) and len(m["latent_shape"]) == 3 and all(isinstance(v, int) and v > 0 for v in m["latent_shape"])),
        ("dtype", m.get("dtype") in ("float16", "float32")),
        ("classes", isinstance(m.get("classes"), list) and all(isinstance(c, str) for c in m["classes"])),
        ("shard_sha256", m.get("shard_sha256") is None or (isinstance(m["shard_sha256"], list) and len(m["shard_sha256"]) == m.get("n_shards"))),
    ):
        if not ok:
            problems.append(f"{key} = {m.get(key)!r}")
    if problems:
        raise StoreError(f"{path} is corrupt: {'; '.join(problems)}")
    return m


def identity_mismatch(old: dict, new: dict) -> list[str]:
    """Keys of the ``identity`` section on which two manifests disagree."""
    a, b = old.get("identity", {}), new.get("identity", {})
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


class ShardWriter:
    """Writes one shard through a memory-mapped temporary file, batch by batch (RAM holds only
    the batch), then renames it into place."""

    def __init__(self, root: str, s: int, rows: int, latent_shape, dtype: str):
        self.lat_path, self.ok_path = shard_paths(root, s)
        self.sum_path = checksum_path(root, s)
        os.makedirs(os.path.dirname(self.lat_path), exist_ok=True)
        self._ctx = atomic_path(self.lat_path)
        self._tmp = self._ctx.__enter__()
        try:
            # blocks reserved up front: a full disk is an OSError naming the shard here, not a
            # SIGBUS on the first write to a page of a sparse file
            self.arr = open_memmap_reserved(self._tmp, dtype, (rows, *latent_shape))
        except BaseException as exc:
            self.arr = None
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary file
            raise
        self.ok = np.zeros(rows, dtype=bool)

    def write(self, rows: np.ndarray, latents: np.ndarray) -> None:
        self.arr[rows] = latents
        self.ok[rows] = True

    def close(self) -> None:
        self.arr.flush()
        self.arr = None  # drop the memmap (close and abort may both run: never `del` twice)
        with atomic_path(self.ok_path) as tmp:
            np.save(tmp, self.ok)
        sums = {"latents": sha256_file(self._tmp), "ok": sha256_file(self.ok_path)}
        atomic_write_json(self.sum_path, sums)
        self._ctx.__exit__(None, None, None)  # latents last: their presence marks the shard done

    def abort(self) -> None:
        self.arr = None
        self._ctx.__exit__(RuntimeError, None, None)


def write_manifest(root: str, manifest: dict) -> None:
    atomic_write_json(os.path.join(root, MANIFEST), manifest)


class LatentStore(Dataset):
    """Random access to a finished store. Items: ``(z float32[C, H, W], y float32[K], i)``
    where ``i`` is the row in the store (and in ``labels.csv``). Rows whose image was skipped
    are left out; ``split`` keeps only rows whose ``split`` column matches."""

    def __init__(self, root: str, split: str | None = None):
        self.root = root
        self.manifest = m = read_manifest(root)
        if not m.get("complete"):
            done = sum(shard_done(root, s, verify=False) for s in range(m["n_shards"]))
            raise StoreError(f"latent store {root} is incomplete ({done} of {m['n_shards']} shards); rerun the same `ltbench encode` command to resume")
        try:
            self.table = pd.read_csv(os.path.join(root, LABELS))
        except (OSError, ValueError) as exc:
            raise StoreError(f"latent store {root}: cannot read {LABELS}: {exc}") from exc
        if len(self.table) != m["n"]:
            raise StoreError(f"latent store {root} is corrupt: {LABELS} has {len(self.table)} rows, manifest says {m['n']}")
        self.classes = tuple(m["classes"])
        self.labels = self.table[list(self.classes)].to_numpy(np.float32)
        self.shape, self.shard_size = tuple(m["latent_shape"]), m["shard_size"]
        ok = np.concatenate([self._load(s, "ok") for s in range(m["n_shards"])]) if m["n"] else np.zeros(0, bool)
        if len(ok) != m["n"]:
            raise StoreError(f"latent store {root} is corrupt: shards hold {len(ok)} rows, manifest says {m['n']}")
        keep = ok.copy()
        if split is not None:
            if "split" not in self.table.columns:
                raise StoreError(f"latent store {root} has no split column; cannot select split={split!r}")
            splits = sorted(str(v) for v in self.table["split"].dropna().unique())
            if split not in splits:
                raise StoreError(f"latent store {root} has no split {split!r} (its splits: {splits})")
            keep &= (self.table["split"] == split).to_numpy()
        self.rows = np.flatnonzero(keep)
        self._maps: dict[int, np.ndarray] = {}

    def _verify(self, s: int, kind: str, path: str) -> None:
        sums = self.manifest.get("shard_sha256")
        if sums is None:
            return  # a store written before checksums: nothing to verify against
        if sha256_file(path) != sums[s][kind]:
            raise StoreError(f"latent store shard {path} is corrupt (its SHA-256 differs from the manifest's: truncated or altered); rerun the same `ltbench encode` command to re-encode it")

    def _load(self, s: int, kind: str) -> np.ndarray:
        lat, okp = shard_paths(self.root, s)
        path = lat if kind == "latents" else okp
        if os.path.exists(path):
            self._verify(s, kind, path)  # once per shard and process: when it is first mapped
        rows = min(self.shard_size, self.manifest["n"] - s * self.shard_size)
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise StoreError(f"latent store shard {path} is missing or corrupt: {exc}") from exc
        want = (rows, *self.shape) if kind == "latents" else (rows,)
        if arr.shape != want or (kind == "latents" and arr.dtype != np.dtype(self.manifest["dtype"])):
            raise StoreError(f"latent store shard {path} is corrupt: shape {arr.shape} dtype {arr.dtype}, expected {want} {self.manifest['dtype']}")
        return arr

    def __len__(self) -> int:
        return len(self.rows)

    def latent(self, row: int) -> np.ndarray:
        s = row // self.shard_size
        if s not in self._maps:
            self._maps[s] = self._load(s, "latents")
        return self._maps[s][row - s * self.shard_size]

    def __getitem__(self, i: int):
        row = int(self.rows[i])
        z = torch.from_numpy(np.asarray(self.latent(row), dtype=np.float32))
        return z, torch.from_numpy(self.labels[row]), row

    def __getstate__(self):  # DataLoader workers re-open their own memory maps
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state
