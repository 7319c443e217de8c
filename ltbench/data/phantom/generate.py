"""CXR-Phantom-LT: labels, split, in-memory generation, and the on-disk dataset.

See ``docs/phantom.md``. The split is drawn by seed (``train_frac``/``val_frac``, test
takes the rest). So that tail AP is defined, every class must be positive at least
``min_test_positives`` times in test: positives are first *moved* into test by swapping
split assignments (labels untouched, prevalences exact); only when the whole sample has
fewer positives than that (tiny n) are labels of random test rows *switched on*, with a
warning, since that distorts the prevalence.
"""

import dataclasses
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ltbench.data.classes import PAPER_CLASSES
from ltbench.data.phantom.config import PhantomConfig
from ltbench.data.phantom.labels import sample_labels
from ltbench.data.phantom.render import RENDERER_VERSION, STREAM_LABELS, STREAM_SPLIT, render
from ltbench.config import check_value
from ltbench.data.csv_dataset import MAX_IMAGE_SIZE
from ltbench.utils.io import atomic_path, atomic_write_json, atomic_write_text, check_replaceable, claim_partial, swap_into_place

log = logging.getLogger("ltbench.data.phantom")
SPLITS = ("train", "val", "test")
LABELS_CSV = "labels.csv"
META_JSON = "phantom.json"


@dataclass
class PhantomSample:
    """A rendered batch: images uint8[B, S, S], masks bool[B, K, S, S], labels uint8[B, K],
    split str[B], indices int64[B]."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    indices: np.ndarray
    classes: tuple = PAPER_CLASSES


def make_labels(cfg: PhantomConfig) -> tuple[np.ndarray, np.ndarray]:
    """Labels uint8[n, 10] and split str[n] of the whole dataset (cheap: no rendering)."""
    labels = sample_labels(cfg.n, np.random.default_rng([cfg.seed, STREAM_LABELS]))
    split = assign_split(labels, np.random.default_rng([cfg.seed, STREAM_SPLIT]), cfg)
    return labels, split


def split_masks(cfg: PhantomConfig, split: str, rows, k: int) -> np.ndarray:
    """Ground-truth masks bool[len(rows), S, S] of class ``k`` for ``rows`` (positions within
    the ``split`` split), rendered again from ``cfg``."""
    _, where = make_labels(cfg)
    return generate(cfg, indices=np.flatnonzero(where == split)[np.asarray(rows, dtype=np.int64)]).masks[:, k]


def fresh_class_sample(cfg: PhantomConfig, classes, per_class: int, seed: int, distinct: bool = False) -> tuple[PhantomConfig, dict]:
    """A fresh phantom sample of its own ``seed`` (no split: images no benchmark split holds),
    large enough for ``per_class`` positives of the rarest of ``classes``; returns (its config,
    {class: int64 indices of up to ``per_class`` positives}). ``distinct``: no image stands for
    two classes (an image of two of them goes to the first)."""
    from ltbench.data.classes import TARGET_PREVALENCE

    rarest = min(TARGET_PREVALENCE[c] for c in classes)
    fresh = dataclasses.replace(cfg, n=int(3 * (len(classes) if distinct else 1) * per_class / rarest) + 1000, seed=seed, min_test_positives=0)
    labels, _ = make_labels(fresh)
    used, out = set(), {}
    for c in classes:
        pos = np.flatnonzero(labels[:, PAPER_CLASSES.index(c)] == 1)
        if distinct:
            pos = np.asarray([i for i in pos if i not in used], np.int64)
        out[c] = pos[:per_class].astype(np.int64)
        used.update(out[c].tolist())
    return fresh, out


def assign_split(labels: np.ndarray, rng: np.random.Generator, cfg: PhantomConfig) -> np.ndarray:
    """Split by seed, then guarantee ``min_test_positives`` per class in test (edits
    ``labels`` in place only when the sample is too small to move positives)."""
    n, m = len(labels), cfg.min_test_positives
    perm = rng.permutation(n)
    n_train, n_val = int(round(cfg.train_frac * n)), int(round(cfg.val_frac * n))  # as n_test_images counts them
    split = np.empty(n, dtype=object)
    split[perm[:n_train]] = "train"
    split[perm[n_train : n_train + n_val]] = "val"
    split[perm[n_train + n_val :]] = "test"
    test = split == "test"
    if m == 0 or test.sum() == 0:
        return split.astype(str)
    for k in np.argsort(labels.sum(0)):  # rarest first, so common classes never starve them
        need = m - int(labels[test, k].sum())
        if need <= 0:
            continue
        # protected: test rows whose removal would push some class below m
        counts = labels[test].sum(0)
        fragile = (labels[:, counts <= m].sum(1) > 0) & test
        donors = np.flatnonzero(~test & (labels[:, k] == 1))
        takers = np.flatnonzero(test & (labels[:, k] == 0) & ~fragile)
        swap = min(need, len(donors), len(takers))
        if swap:
            d = rng.choice(donors, swap, replace=False)
            t = rng.choice(takers, swap, replace=False)
            split[d], split[t] = "test", split[d].copy()
            test[d], test[t] = True, False
            need -= swap
        if need > 0:
            rows = rng.choice(np.flatnonzero(test & (labels[:, k] == 0)), min(need, int((test & (labels[:, k] == 0)).sum())), replace=False)
            labels[rows, k] = 1
            warnings.warn(
                f"phantom n={n} has too few '{PAPER_CLASSES[k]}' positives for {m} in test; "
                f"switched it on in {len(rows)} test images (prevalence is distorted at this n)",
                stacklevel=3,
            )
    return split.astype(str)


def generate(cfg: PhantomConfig, indices=None, batch_size: int = 256) -> PhantomSample:
    """Render samples in memory (all of them, or ``indices``), in batches of ``batch_size``."""
    labels, split = make_labels(cfg)
    idx = np.arange(cfg.n) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= cfg.n):
        raise IndexError(f"phantom indices must be in [0, {cfg.n})")
    images = np.zeros((len(idx), cfg.size, cfg.size), np.uint8)
    masks = np.zeros((len(idx), len(PAPER_CLASSES), cfg.size, cfg.size), bool)
    for s in range(0, len(idx), batch_size):
        b = idx[s : s + batch_size]
        images[s : s + len(b)], masks[s : s + len(b)] = render(labels[b], b, cfg.seed, cfg)
    return PhantomSample(images, masks, labels[idx], split[idx], idx)


def masks_to_bits(masks: np.ndarray) -> np.ndarray:
    """bool[B, K, S, S] -> uint16[B, S, S], bit k set where finding k was drawn."""
    weights = (1 << np.arange(masks.shape[1], dtype=np.uint16)).reshape(1, -1, 1, 1)
    return (masks.astype(np.uint16) * weights).sum(1, dtype=np.uint16)


def bits_to_masks(bits: np.ndarray, k: int = len(PAPER_CLASSES)) -> np.ndarray:
    """uint16[..., S, S] -> bool[..., K, S, S]."""
    shifts = np.arange(k, dtype=np.uint16).reshape(-1, 1, 1)
    return ((bits[..., None, :, :] >> shifts) & 1).astype(bool)


def write_phantom(cfg: PhantomConfig, out: str, batch_size: int = 256, progress: bool = True, overwrite: bool = False, layout: str = "phantom", upsample_to: int | None = None) -> str:
    """Write CXR-Phantom-LT to ``out``: ``images/NNNNNN.png`` (8-bit grayscale),
    ``masks/NNNNNN.png`` (16-bit, bit k = finding k), ``labels.csv`` (``path``, ``mask_path``,
    ``split``, one 0/1 column per class) and ``phantom.json`` (the config).

    ``layout="mimic-cxr-lt"`` writes the same images the way MIMIC-CXR-LT is laid out, so the
    ``mimic-cxr-lt`` / ``mimic-cxr-lt-paper`` dataset presets (the paper's code path) read it:
    ``files/pNN/p<subject>/s<study>/<dicom_id>.png`` and one labels CSV per split,
    ``miccai2023_mimic-cxr-lt_labels_{train,val,test}.csv`` (``dicom_id``, ``subject_id``,
    ``study_id``, ``path``, then the 19 MIMIC-CXR-LT classes; the 9 the phantom does not draw
    are 0). ``upsample_to``: images are rendered at ``cfg.size`` and written bilinearly
    upsampled to this size (masks by nearest neighbour), e.g. a 512 px rehearsal of the paper's
    shapes without the cost of rendering at 512 px.

    The folder is built as ``out.partial`` and renamed when complete, so ``out`` is either
    absent or whole. A killed run resumes: finished images in ``out.partial`` are kept
    (each was written atomically and is deterministic). Returns ``out``."""
    from tqdm.auto import tqdm

    if layout not in ("phantom", "mimic-cxr-lt"):
        raise ValueError(f"layout must be 'phantom' or 'mimic-cxr-lt', got {layout!r}")
    check_value("--batch-size", batch_size, int, ge=1, le=1 << 20)  # before any folder exists: no OUT.partial left behind
    if upsample_to is not None:
        check_value("--upsample-to", upsample_to, int, ge=cfg.size, le=MAX_IMAGE_SIZE)
    meta = {"dataset": "CXR-Phantom-LT", "config": dataclasses.asdict(cfg), "renderer": RENDERER_VERSION, "classes": list(PAPER_CLASSES), "layout": layout, "upsample_to": upsample_to}

    def same(prev):  # same config and same renderer: the same bytes
        return prev is not None and prev.get("config") == meta["config"] and prev.get("renderer") == RENDERER_VERSION and prev.get("layout", "phantom") == layout and prev.get("upsample_to") == upsample_to

    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"--out {out} is a file, not a dataset folder; choose another path (--overwrite never deletes a file)")
    if os.path.isdir(out):
        prev = _read_meta(out)
        if same(prev) and os.path.exists(os.path.join(out, LABELS_CSV)):
            log.info("phantom at %s already matches this config; nothing to do", out)
            return out
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not a phantom made with this config and renderer (version {RENDERER_VERSION}); pass overwrite=True (--overwrite) to replace it")
        check_replaceable(out, overwrite, legacy=_is_phantom)  # only a folder ltbench wrote; deleted once the new one is whole
    partial = out.rstrip("/") + ".partial"
    claim_partial(partial, "phantom", legacy=_is_phantom)
    prev = _read_meta(partial)
    if prev is not None and not same(prev):
        shutil.rmtree(partial)  # an interrupted run with other settings or renderer: nothing reusable (ours: it has the marker)
        claim_partial(partial, "phantom", legacy=_is_phantom)
    os.makedirs(os.path.join(partial, "images" if layout == "phantom" else "files"), exist_ok=True)
    os.makedirs(os.path.join(partial, "masks"), exist_ok=True)
    atomic_write_json(os.path.join(partial, META_JSON), meta)

    labels, split = make_labels(cfg)
    names = [f"{i:06d}.png" for i in range(cfg.n)]
    image_paths = [f"images/{n}" for n in names] if layout == "phantom" else [mimic_path(i) for i in range(cfg.n)]
    todo = np.array([i for i in range(cfg.n) if not os.path.exists(os.path.join(partial, "masks", names[i]))], dtype=np.int64)
    with tqdm(total=cfg.n, initial=cfg.n - len(todo), desc="phantom", unit="img", disable=not progress) as bar:
        for s in range(0, len(todo), batch_size):
            b = todo[s : s + batch_size]
            images, masks = render(labels[b], b, cfg.seed, cfg)
            bits = masks_to_bits(masks)
            for j, i in enumerate(b):
                img, bit = images[j], bits[j]
                if upsample_to and upsample_to != cfg.size:
                    img = np.asarray(Image.fromarray(img).resize((upsample_to, upsample_to), Image.BILINEAR))
                    bit = np.asarray(Image.fromarray(bit).resize((upsample_to, upsample_to), Image.NEAREST))
                # image first, mask last: a present mask marks the pair complete
                os.makedirs(os.path.dirname(os.path.join(partial, image_paths[i])), exist_ok=True)
                _save_png(img, os.path.join(partial, image_paths[i]))
                _save_png(bit, os.path.join(partial, "masks", names[i]))
            bar.update(len(b))
    if layout == "mimic-cxr-lt":
        _write_mimic_csvs(partial, labels, split, image_paths)

    header = ["path", "mask_path", "split", *PAPER_CLASSES]
    lines = [",".join(f'"{h}"' if "," in h else h for h in header)]
    for i in range(cfg.n):
        lines.append(",".join([image_paths[i], f"masks/{names[i]}", split[i], *map(str, labels[i])]))
    atomic_write_text(os.path.join(partial, LABELS_CSV), "\n".join(lines) + "\n")
    swap_into_place(partial, out, legacy=_is_phantom)
    return out


def _is_phantom(folder: str) -> bool:
    """A phantom written before output markers existed: its phantom.json names the dataset."""
    prev = _read_meta(folder)
    return isinstance(prev, dict) and prev.get("dataset") == "CXR-Phantom-LT"


def mimic_path(i: int) -> str:
    """MIMIC-CXR-JPG's folder scheme for phantom image ``i``: files/pNN/p<subject>/s<study>/<dicom_id>.png
    (one study per subject, one image per study)."""
    subject, study = 10_000_000 + i, 50_000_000 + i
    return f"files/p{subject // 1_000_000}/p{subject}/s{study}/{mimic_dicom_id(i)}.png"


def mimic_dicom_id(i: int) -> str:
    import hashlib

    h = hashlib.sha1(f"phantom-{i}".encode()).hexdigest()
    return "-".join(h[k : k + 8] for k in range(0, 40, 8))


def _write_mimic_csvs(folder: str, labels: np.ndarray, split: np.ndarray, paths: list) -> None:
    from ltbench.data.classes import MIMIC_CXR_LT_19

    missing = [c for c in PAPER_CLASSES if c not in MIMIC_CXR_LT_19]
    if missing:
        raise AssertionError(f"phantom classes {missing} are not MIMIC-CXR-LT classes")
    cols = {c: PAPER_CLASSES.index(c) for c in PAPER_CLASSES}
    for part in ("train", "val", "test"):
        rows = np.flatnonzero(split == part)
        header = ["dicom_id", "subject_id", "study_id", "path", *MIMIC_CXR_LT_19]
        lines = [",".join(header)]
        for i in rows:
            lab = [str(int(labels[i, cols[c]])) if c in cols else str(int(c == "No Finding" and labels[i].sum() == 0)) for c in MIMIC_CXR_LT_19]
            lines.append(",".join([mimic_dicom_id(int(i)), str(10_000_000 + int(i)), str(50_000_000 + int(i)), paths[i], *lab]))
        atomic_write_text(os.path.join(folder, f"miccai2023_mimic-cxr-lt_labels_{part}.csv"), "\n".join(lines) + "\n")


def _save_png(arr: np.ndarray, path: str) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _read_meta(folder: str):
    try:
        with open(os.path.join(folder, META_JSON)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None
