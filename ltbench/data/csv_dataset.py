"""Multi-label image dataset over a labels CSV and an image root: the one loader for real
datasets (MIMIC-CXR-LT, CXR-LT 2023, ...) and for CXR-Phantom-LT on disk.

Class columns are selected by name, never by position (a column named twice in the header is
an error). Label values: 1 positive; 0, blank and NaN negative; -1 (CheXpert "uncertain")
mapped by ``uncertain`` ("zero" by default, U-Zeros). Any other value is an error naming the
column and row.

Image paths stay inside the image root: a path in the CSV must be relative and must not
contain a ``..`` component (``../x.png``, ``a/../../x.png`` and absolute paths are refused,
naming the row), since a dataset's CSV could otherwise pull any readable file into latents and
outputs. Symbolic links inside the root are followed wherever they point: they are part of the
root, made by whoever controls that folder (a MIMIC-CXR-JPG ``files`` folder linked to shared
storage is the common case), not by the CSV. Checking every path component for ``..`` rather
than resolving and comparing also keeps ``link/../x`` from escaping through such a link."""

import csv as _csv
import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ltbench.config import Config, opt
from ltbench.data.images import ImageReadError, read_image, to_model_input

log = logging.getLogger("ltbench.data")


MAX_IMAGE_SIZE = 4096  # px; a model input of 3 x 4096 x 4096 floats is already 200 MB per image


@dataclass(frozen=True)
class ImageConfig(Config):
    """How images become model inputs."""

    size: int = opt(64, "px after resize + centre crop (RoentGen: 512)", ge=1, le=MAX_IMAGE_SIZE, cli="--size (--image-size of classify)")
    channels: int = opt(1, "1 for grayscale models, 3 for Stable Diffusion's VAE", choices=(1, 3))
    on_error: str = opt("raise", "\"raise\" or \"skip\" an unreadable image (skips are reported)", choices=("raise", "skip"))
    uncertain: str = opt("zero", "CheXpert -1: \"zero\" (U-Zeros) or \"one\" (U-Ones)", choices=("zero", "one"))


def read_labels(csv: str, classes, path_column: str = "path", uncertain: str = "zero") -> pd.DataFrame:
    """Read a labels CSV; returns a frame with ``path_column``, the classes as uint8 0/1 and any
    other columns untouched. Raises a clear error for a missing file or columns."""
    if not os.path.isfile(csv):
        raise FileNotFoundError(f"labels CSV not found: {csv}")
    try:
        with open(csv, newline="", encoding="utf-8-sig") as f:
            header = next(_csv.reader(f), [])
    except (UnicodeDecodeError, _csv.Error) as exc:
        raise ValueError(f"cannot parse labels CSV {csv}: {exc}") from exc
    twice = sorted({c for c in header if header.count(c) > 1 and c in (path_column, *classes)})
    if twice:
        raise ValueError(f"{csv}: column(s) {twice} appear more than once in the header; which copy holds the labels is ambiguous")
    try:
        df = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse labels CSV {csv}: {exc}") from exc
    missing = [c for c in [path_column, *classes] if c not in df.columns]
    if missing:
        raise KeyError(f"{csv} lacks column(s) {missing}; it has {list(df.columns)}")
    for c in classes:
        col = pd.to_numeric(df[c], errors="coerce")
        bad = col.isna() & df[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{csv}: column '{c}' has a non-numeric value {df[c].iloc[i]!r} in row {i}")
        vals = col.fillna(0.0)
        odd = ~vals.isin([0.0, 1.0, -1.0])
        if odd.any():
            i = int(np.flatnonzero(odd.to_numpy())[0])
            raise ValueError(f"{csv}: column '{c}' has value {vals.iloc[i]} in row {i}; labels must be 1, 0, -1 or blank")
        df[c] = vals.replace(-1.0, 1.0 if uncertain == "one" else 0.0).astype(np.uint8)
    if df[path_column].isna().any():
        raise ValueError(f"{csv}: column '{path_column}' has empty entries (rows {np.flatnonzero(df[path_column].isna().to_numpy())[:5].tolist()}...)")
    return df


class CsvImageDataset(Dataset):
    """Items are ``(image Tensor[C, S, S] in [-1, 1], labels float32[K], index)``.

    With ``on_error="skip"`` an unreadable image yields ``None`` (drop it with
    :func:`collate_skip_none`) and is recorded in ``self.skipped`` of that process."""

    def __init__(self, csv: str, root: str, classes, image: ImageConfig = ImageConfig(), split: str | None = None, path_column: str = "path"):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"image root not found or not a folder: {root}")
        self.root, self.classes, self.image, self.path_column = root, tuple(classes), image, path_column
        df = read_labels(csv, self.classes, path_column, image.uncertain)
        if df.empty:
            raise ValueError(f"{csv} has a header but no rows")
        check_paths_inside(df[path_column], csv, root)
        if split is not None:
            if "split" not in df.columns:
                raise KeyError(f"{csv} has no 'split' column, so split={split!r} cannot be selected")
            df = df[df["split"] == split]
            if df.empty:
                raise ValueError(f"{csv} has no rows with split == {split!r}")
        self.frame = df.reset_index(drop=True)
        self.labels = self.frame[list(self.classes)].to_numpy(np.float32)
        for c, n in zip(self.classes, self.labels.sum(0)):
            if n == 0:
                warnings.warn(f"class '{c}' has no positive labels in {csv}" + (f" (split {split})" if split else ""), stacklevel=2)
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.frame)

    def path(self, i: int) -> str:
        return os.path.join(self.root, str(self.frame[self.path_column].iloc[i]))

    def __getitem__(self, i: int):
        path = self.path(i)
        try:
            img = read_image(path)
        except ImageReadError as exc:
            if self.image.on_error == "raise":
                raise
            warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
            self.skipped.append(path)
            return None
        x = to_model_input(img, self.image.size, self.image.channels)
        return x, torch.from_numpy(self.labels[i]), i


def check_paths_inside(paths: pd.Series, csv: str, root: str) -> None:
    """Refuse image paths that leave the image root (see the module docstring): absolute
    paths and any ``..`` component. The error names the first bad row (0-based data row and
    the CSV line) and its path."""
    p = paths.astype(str)
    parts = p.str.replace("\\", "/", regex=False)  # also a Windows-style a\..\b
    bad = p.map(os.path.isabs) | parts.str.startswith("/") | parts.str.contains(r"(?:^|/)\.\.(?:/|$)", regex=True)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{csv}: row {i} (line {i + 2}) has image path {p.iloc[i]!r}, which leaves the image root {root}; paths must be relative to it, without '..' ({int(bad.sum())} such row(s))")


def collate_skip_none(batch):
    """Default collation after dropping the ``None`` items of skipped images."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.utils.data.default_collate(batch)
