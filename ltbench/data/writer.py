"""Write generated images in the dataset layout (PNG folder + labels CSV with a ``path``
column and one 0/1 column per class), so a harness reads generated data exactly like real
data. The folder is built as ``OUT.partial`` and renamed when complete."""

import os
import shutil

import numpy as np
import pandas as pd
from PIL import Image

from ltbench.data.images import to_uint8_gray
from ltbench.utils.io import atomic_write_text

LABELS_CSV = "labels.csv"


def write_image_folder(out: str, images, labels: np.ndarray, classes, extra: dict | None = None, latents: np.ndarray | None = None, overwrite: bool = False) -> str:
    """images: float [N, C, H, W] or [N, H, W] in [0, 1], or uint8 [N, H, W] as they are; labels:
    0/1 [N, K]; ``extra``: more CSV columns (e.g. ``prompt``, ``source``); ``latents``: saved
    as ``latents.npy`` alongside."""
    imgs = np.asarray(images) if getattr(images, "dtype", None) == np.uint8 and np.ndim(images) == 3 else to_uint8_gray(images)
    labels = np.asarray(labels)
    if labels.shape != (len(imgs), len(classes)):
        raise ValueError(f"labels must have shape ({len(imgs)}, {len(classes)}), got {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0/1 multi-hot")
    if os.path.exists(out):
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) or choose another --out")
        shutil.rmtree(out)
    tmp = out.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "images"))
    paths = []
    for i, im in enumerate(imgs):
        paths.append(f"images/{i:06d}.png")
        Image.fromarray(im).save(os.path.join(tmp, paths[-1]))
    df = pd.DataFrame({"path": paths, **(extra or {})})
    for k, c in enumerate(classes):
        df[c] = labels[:, k].astype(np.uint8)
    atomic_write_text(os.path.join(tmp, LABELS_CSV), df.to_csv(index=False))
    if latents is not None:
        np.save(os.path.join(tmp, "latents.npy"), np.asarray(latents, dtype=np.float32))
    os.replace(tmp, out)
    return out


def write_decoded(out: str, prior, z, labels: np.ndarray, classes, extra: dict | None = None, overwrite: bool = False, batch_size: int = 32) -> str:
    """Decode latents ``z`` Tensor[N, C, h, w] with ``prior``'s VAE a batch at a time and write
    them with ``labels`` as an image folder (``write_image_folder``; the latents beside)."""
    return write_image_folder(out, prior.decode_uint8(z, batch_size=batch_size), labels, classes, extra=extra, latents=np.asarray(z, dtype=np.float32), overwrite=overwrite)
