"""Write generated images in the dataset layout (PNG folder + labels CSV with a ``path``
column and one 0/1 column per class), so a harness reads generated data exactly like real
data. The folder is built as ``OUT.partial`` and renamed when complete."""

import os
import shutil

import numpy as np
import pandas as pd
from PIL import Image

from ltbench.data.images import to_uint8_gray
from ltbench.utils.io import atomic_path, atomic_write_text, check_replaceable, claim_partial, raise_named, swap_into_place

LABELS_CSV = "labels.csv"
IMAGE_FOLDER = "image-folder"  # the output marker's kind (generate, augment)


def check_image_folder_out(out: str, overwrite: bool) -> None:
    """Refuse an ``--out`` that :func:`write_image_folder` may not replace (it exists without
    ``overwrite``, or it is not a folder ltbench wrote). Cheap: call it before generating."""
    check_replaceable(out, overwrite)


def write_image_folder(out: str, images, labels: np.ndarray, classes, extra: dict | None = None, latents: np.ndarray | None = None, overwrite: bool = False) -> str:
    """images: float [N, C, H, W] or [N, H, W] in [0, 1], or uint8 [N, H, W] as they are; labels:
    0/1 [N, K]; ``extra``: more CSV columns (e.g. ``prompt``, ``source``); ``latents``: saved
    as ``latents.npy`` alongside.

    Built in ``out.partial`` and swapped in when whole; ``overwrite`` replaces only a folder
    ltbench wrote (its ``.ltbench-output.json`` marker), and only once the new one is ready."""
    imgs = np.asarray(images) if getattr(images, "dtype", None) == np.uint8 and np.ndim(images) == 3 else to_uint8_gray(images)
    if len(imgs) == 0:
        raise ValueError(f"nothing to write to {out}: no images were generated (check --n / --n-per-class and the prompts or tail classes)")
    labels = np.asarray(labels)
    if labels.shape != (len(imgs), len(classes)):
        raise ValueError(f"labels must have shape ({len(imgs)}, {len(classes)}), got {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1 multi-hot")
    check_image_folder_out(out, overwrite)
    tmp = out.rstrip("/") + ".partial"
    if os.path.lexists(tmp):  # an interrupted write (not resumable): ours only, then rebuilt
        claim_partial(tmp, IMAGE_FOLDER)
        shutil.rmtree(tmp)
    claim_partial(tmp, IMAGE_FOLDER)
    try:
        os.makedirs(os.path.join(tmp, "images"))
        paths = []
        for i, im in enumerate(imgs):
            paths.append(f"images/{i:06d}.png")
            try:
                Image.fromarray(im).save(os.path.join(tmp, paths[-1]))
            except OSError as exc:
                raise_named(exc, os.path.join(tmp, paths[-1]))
        df = pd.DataFrame({"path": paths, **(extra or {})})
        for k, c in enumerate(classes):
            df[c] = labels[:, k].astype(np.uint8)
        atomic_write_text(os.path.join(tmp, LABELS_CSV), df.to_csv(index=False))
        if latents is not None:
            with atomic_path(os.path.join(tmp, "latents.npy")) as t:
                np.save(t, np.asarray(latents, dtype=np.float32))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # not resumable: a full disk leaves nothing behind
        raise
    swap_into_place(tmp, out)
    return out


def write_decoded(out: str, prior, z, labels: np.ndarray, classes, extra: dict | None = None, overwrite: bool = False, batch_size: int = 32) -> str:
    """Decode latents ``z`` Tensor[N, C, h, w] with ``prior``'s VAE a batch at a time and write
    them with ``labels`` as an image folder (``write_image_folder``; the latents beside)."""
    return write_image_folder(out, prior.decode_uint8(z, batch_size=batch_size), labels, classes, extra=extra, latents=np.asarray(z, dtype=np.float32), overwrite=overwrite)
