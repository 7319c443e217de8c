"""Stage 2: class activation maps (Sec. 3.2), computed by pytorch-grad-cam.

The paper uses EigenCAM: the first principal component of the activations of the
classifier's last convolutional block, whatever the class, for input ``S(z)``. On small
latent grids that block is coarse (the CPU classifier on 16x16 latents: 2x2), and the map is
nearly one smooth ramp for every image, so ``FusionConfig`` also offers:

* ``cam_layers="multi"``: every block after the first (the authors take VGG11
  ``features[2:-1]``), maps averaged by pytorch-grad-cam, so finer grids count;
* ``cam="gradcam"`` / ``"gradcam++"``: class-targeted maps (GradCAM, GradCAM++), targeted at
  each example's rarest positive label (by the dataset's own prevalence; an example with no
  positive label at the class C scores highest), which is its tail class for a tail example.

pytorch-grad-cam rescales each map per image to [0, 1] and resizes it to the sparse grid
(H, W). Maps are written batch by batch into a memory-mapped ``cams.npy`` next to the
classifier scores ``scores.npy`` (sigmoid of C, used for partner choice), so RAM holds one
batch.

Devices: S and C run on ``device`` (batches pinned and copied asynchronously on CUDA);
pytorch-grad-cam copies the hooked activations and gradients to the CPU and computes the maps
there in NumPy (EigenCAM's SVD, the per-image rescaling and resize), so only the network
passes use the GPU. CAMs run in float32 on every device, without autocast: the maps are
thresholded at tau (M^S = [CAM > tau_h]), and bfloat16 activations and gradients would move
pixels across the threshold.
"""

import os

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ltbench.method.networks import cam_layers
from ltbench.utils.device import loader_kwargs, module_device, resolve_device, to_device
from ltbench.utils.io import atomic_path, open_memmap_reserved

CAM_METHODS = ("eigencam", "gradcam", "gradcam++")
CAM_LAYERS = ("last", "multi")


class _OnSparse(nn.Module):
    """C applied to the sparse code: the CAM gets the classifier, the input is S(z)."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, s):
        return self.classifier(s)


def class_activation_maps(model, sparse: torch.Tensor, method: str = "eigencam", layers: str = "last", targets=None) -> np.ndarray:
    """Sparse codes Tensor[B, C', H, W] -> CAMs float32[B, H, W] in [0, 1]. ``targets`` int[B]:
    the class of each map (class-targeted methods; EigenCAM ignores it)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method not in CAM_METHODS:
        raise ValueError(f"cam must be one of {CAM_METHODS}, got {method!r}")
    if len(sparse) == 0:
        return np.zeros((0, *sparse.shape[2:]), np.float32)
    model.eval()
    cls = {"eigencam": pgc.EigenCAM, "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus}[method]
    if method == "eigencam":
        tgt = None
    else:
        if targets is None or len(targets) != len(sparse):
            raise ValueError(f"{method} is class-targeted: pass one target class per map")
        tgt = [ClassifierOutputTarget(int(t)) for t in targets]
    with cls(model=_OnSparse(model.classifier), target_layers=cam_layers(model.classifier, layers)) as cam:
        maps = cam(input_tensor=sparse, targets=tgt).astype(np.float32)
    model.zero_grad(set_to_none=True)  # the gradient methods leave gradients on C's weights
    return maps


def eigencam(model, sparse: torch.Tensor) -> np.ndarray:
    """The paper's map: EigenCAM on the last block. Tensor[B, C', H, W] -> float32[B, H, W]."""
    return class_activation_maps(model, sparse, "eigencam", "last")


def example_targets(labels: np.ndarray, scores: np.ndarray, prevalence: np.ndarray | None = None) -> np.ndarray:
    """The class a class-targeted CAM of each example explains: its rarest positive label (by
    ``prevalence``, default: that of ``labels``), or, for an example without one, the class C
    scores highest. labels [N, K] 0/1, scores float[N, K] -> int64[N]."""
    pos = np.asarray(labels) > 0
    prevalence = pos.mean(0) if prevalence is None else np.asarray(prevalence)
    rarity = np.where(pos, -prevalence[None, :], -np.inf)  # rarest positive = largest -prevalence
    return np.where(pos.any(1), np.argmax(rarity, 1), np.argmax(np.asarray(scores), 1)).astype(np.int64)


def batch_cams(model, z: torch.Tensor, y: np.ndarray, prevalence: np.ndarray, method: str = "eigencam", layers: str = "last", device=None) -> tuple[np.ndarray, np.ndarray]:
    """One batch of latents Tensor[B, C, H, W] (any device) with labels [B, K] -> (CAMs
    float32[B, H, W], scores float32[B, K] = sigmoid of C), NumPy arrays on the host;
    class-targeted maps explain ``example_targets`` by ``prevalence`` (the whole dataset's, not
    the batch's). ``device``: where S and C run (None: where the model is; else the model is
    moved there, in place)."""
    if device is None:
        dev = module_device(model)
    else:
        dev = resolve_device(device)
        model.to(dev)
    z = to_device(z, dev)
    with torch.no_grad():
        s = model.sparse(z)
        sc = torch.sigmoid(model.classifier(s)).float().cpu().numpy()
    targets = None if method == "eigencam" else example_targets(y, sc, prevalence)
    return class_activation_maps(model, s, method, layers, targets), sc


def compute_cams(model, dataset, out_dir: str, method: str, layers: str, batch_size: int = 128, progress: bool = True, device="auto") -> tuple[np.ndarray, np.ndarray]:
    """CAMs and classifier scores of every item of ``dataset`` (items ``(z [C, H, W], y [K],
    row)``), in dataset order, with S and C on ``device`` (auto, cpu, cuda, cuda:N; the model
    is moved there, in place). Returns memory maps ``(cams float16[N, H, W], scores
    float32[N, K])``."""
    from tqdm.auto import tqdm

    from ltbench.method.il import label_matrix

    dev = resolve_device(device)
    model.to(dev)
    n = len(dataset)
    _, h, w = model.latent_shape
    prevalence = (label_matrix(dataset) > 0).mean(0)  # of the whole dataset, not the batch
    os.makedirs(out_dir, exist_ok=True)
    cam_path, score_path = os.path.join(out_dir, "cams.npy"), os.path.join(out_dir, "scores.npy")
    with atomic_path(cam_path) as cam_tmp, atomic_path(score_path) as score_tmp:
        # blocks reserved first: a full disk is an OSError naming the file, not a SIGBUS
        cams = open_memmap_reserved(cam_tmp, np.float16, (n, h, w))
        scores = open_memmap_reserved(score_tmp, np.float32, (n, model.n_classes))
        i = 0
        for z, y, _ in tqdm(DataLoader(dataset, batch_size=batch_size, **loader_kwargs(dev)), desc=f"{method} ({layers})", disable=not progress):
            cams[i : i + len(z)], scores[i : i + len(z)] = batch_cams(model, z, y.numpy(), prevalence, method, layers, device=dev)
            i += len(z)
        cams.flush()
        scores.flush()
        del cams, scores
    return np.load(cam_path, mmap_mode="r"), np.load(score_path, mmap_mode="r")

