"""torchxrayvision's own dataset classes (NIH ChestX-ray14, CheXpert, ...) behind ltbench's
item format, so we reuse its CSV parsing, view filtering and label mapping instead of
rewriting them.

    ds = XRVAdapter(xrv.datasets.NIH_Dataset(imgpath=".../images"), classes=["Pneumothorax"])

xrv returns images scaled to [-1024, 1024] with one channel; the adapter brings them to
``ImageConfig``'s size and channels in [-1, 1] and picks classes by name (xrv's NaN labels,
i.e. not annotated, become 0)."""

import sys
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from ltbench.data.csv_dataset import ImageConfig
from ltbench.data.images import to_model_input


def import_torchxrayvision():
    """``import torchxrayvision``, without the process-wide ``warnings.filterwarnings("ignore")``
    its ``models`` module runs at import: the warning filters are restored afterwards, so
    ltbench's warnings (and everyone else's) still reach the user. Every import of it in
    ltbench goes through here; once imported (here), a later plain ``import torchxrayvision``
    finds the module loaded and changes nothing."""
    if "torchxrayvision" in sys.modules:
        return sys.modules["torchxrayvision"]
    with warnings.catch_warnings():  # restores warnings.filters on exit, whatever the import did
        import torchxrayvision
    return torchxrayvision


class XRVAdapter(Dataset):
    def __init__(self, xrv_dataset, classes, image: ImageConfig = ImageConfig()):
        have = list(xrv_dataset.pathologies)
        missing = [c for c in classes if c not in have]
        if missing:
            raise KeyError(f"{type(xrv_dataset).__name__} has no pathology {missing}; it has {have}")
        self.ds, self.classes, self.image = xrv_dataset, tuple(classes), image
        self.cols = [have.index(c) for c in classes]
        self.labels = np.nan_to_num(np.asarray(xrv_dataset.labels, dtype=np.float32)[:, self.cols]).clip(0, 1)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        item = self.ds[i]
        img = np.asarray(item["img"], dtype=np.float32)
        img = img[0] if img.ndim == 3 else img
        img = np.clip((img + 1024.0) / 2048.0, 0, 1)
        return to_model_input(img, self.image.size, self.image.channels), torch.from_numpy(self.labels[i]), i
