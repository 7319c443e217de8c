"""Stage 2: class activation maps (Sec. 3.2) with pytorch-grad-cam's EigenCAM.

EigenCAM takes the first principal component of the activations of the classifier's last
convolutional block (it ignores the target class), for input ``S(z)``; pytorch-grad-cam
rescales it per image to [0, 1] and resizes it to the sparse grid (H, W). Maps are written
batch by batch into a memory-mapped ``cams.npy`` next to the classifier scores
``scores.npy`` (sigmoid of C, used for partner choice), so RAM holds one batch.
"""

import os

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ltbench.method.networks import cam_layer
from ltbench.utils.io import atomic_path


class _OnSparse(nn.Module):
    """C applied to the sparse code: EigenCAM gets the classifier, the input is S(z)."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, s):
        return self.classifier(s)


def eigencam(model, sparse: torch.Tensor) -> np.ndarray:
    """Sparse codes Tensor[B, C', H, W] -> CAMs float32[B, H, W] in [0, 1]."""
    from pytorch_grad_cam import EigenCAM

    model.eval()
    with EigenCAM(model=_OnSparse(model.classifier), target_layers=[cam_layer(model.classifier)]) as cam:
        return cam(input_tensor=sparse, targets=None).astype(np.float32)


def compute_cams(model, dataset, out_dir: str, batch_size: int = 128, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """CAMs and classifier scores of every item of ``dataset`` (items ``(z, y, row)``), in
    dataset order. Returns memory maps ``(cams float16[N, H, W], scores float32[N, K])``."""
    from tqdm.auto import tqdm

    n = len(dataset)
    _, h, w = model.latent_shape
    os.makedirs(out_dir, exist_ok=True)
    cam_path, score_path = os.path.join(out_dir, "cams.npy"), os.path.join(out_dir, "scores.npy")
    with atomic_path(cam_path) as cam_tmp, atomic_path(score_path) as score_tmp:
        cams = np.lib.format.open_memmap(cam_tmp, mode="w+", dtype=np.float16, shape=(n, h, w))
        scores = np.lib.format.open_memmap(score_tmp, mode="w+", dtype=np.float32, shape=(n, model.n_classes))
        i = 0
        for z, _, _ in tqdm(DataLoader(dataset, batch_size=batch_size), desc="eigencam", disable=not progress):
            with torch.no_grad():
                s = model.sparse(z)
                scores[i : i + len(z)] = torch.sigmoid(model.classifier(s)).numpy()
            cams[i : i + len(z)] = eigencam(model, s)
            i += len(z)
        cams.flush()
        scores.flush()
        del cams, scores
    return np.load(cam_path, mmap_mode="r"), np.load(score_path, mmap_mode="r")
