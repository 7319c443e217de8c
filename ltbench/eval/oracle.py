"""The phantom's oracle: a classifier trained on a much larger CXR-Phantom-LT sample than the
benchmark's (free to render), at full resolution, with a class-balanced loss so the tail is
learned. It judges whether generated samples carry their labels (label fidelity) and its
penultimate features are the domain feature space of the phantom's FID.

The shipped oracle (``ltbench/eval/phantom_oracle/``) is the output of
``ltbench oracle train`` with the defaults below; ``oracle.json`` beside it records its
average precision on the benchmark's default test split next to the training config."""

import dataclasses
import json
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from ltbench.data.classes import PAPER_CLASSES
from ltbench.data.phantom import PhantomConfig, generate
from ltbench.utils.dist import barrier, is_main
from ltbench.nets import SmallCNN, balanced_pos_weight, fit_multilabel, predict_proba, thresholds_at_fpr
from ltbench.utils.io import atomic_path, atomic_write_json
from ltbench.utils.weights import load_checkpoint

from ltbench.config import Config, opt

SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "phantom_oracle")
WEIGHTS = "oracle.pt"


@dataclass(frozen=True)
class OracleConfig(Config):
    n_images: int = opt(30_000, "3x the benchmark's default phantom, all used for training", ge=1, le=10_000_000)
    phantom_seed: int = opt(3000, "its own seed: neither the benchmark's (0), the prior's (1000) nor the judge's (2000)", ge=0)
    width: int = opt(24, "SmallCNN width; features are 4 * width = 96-d", ge=1, le=1024)
    epochs: int = opt(6, "passes over the sample (Adam); the degradations need more than 4", ge=1, le=10_000)
    batch_size: int = opt(64, "images per step", ge=1, le=1 << 20)
    lr: float = opt(3e-3, "Adam learning rate", gt=0, le=10)
    max_pos_weight: float = opt(50.0, "class-balanced BCE, capped so the rarest class does not dominate", gt=0)
    augment: bool = opt(True, "blur/noise/gain changes (nets.degrade): judge findings, not the renderer's texture")
    max_blur: float = opt(0.8, "px, the strongest augmentation blur (1.2 halved Fracture's AP: it smooths the rib step)", ge=0, le=100)
    n_calibration: int = opt(10_000, "fresh images (seed phantom_seed + 1) that set the per-class thresholds", ge=1, le=10_000_000)
    fpr: float = opt(0.05, "per-class threshold: this share of clean real negatives is called positive", gt=0, lt=1)
    seed: int = opt(0, "init, batch order, degradations", ge=0)


class Oracle:
    """A trained oracle. Inputs: images as uint8 Tensor/array [N, H, W] or [N, 1, H, W], or
    float in [0, 1]; all at the size it was trained on."""

    def __init__(self, net: SmallCNN, classes, size: int, config: dict, thresholds=None):
        self.net, self.classes, self.size, self.config = net.eval(), list(classes), size, config
        # per-class decision thresholds (float[K]) at a fixed false-positive rate on clean real
        # images; 0.5 for an oracle saved without them
        self.thresholds = np.full(len(self.classes), 0.5) if thresholds is None else np.asarray(thresholds, np.float64)

    def to(self, device) -> "Oracle":
        """Score on ``device`` (auto, cpu, cuda, cuda:N): the network moves, inputs follow it
        batch by batch, outputs come back as NumPy arrays / CPU tensors."""
        from ltbench.utils.device import resolve_device

        self.net.to(resolve_device(device))
        return self

    def _input(self, images) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"oracle input must be grayscale [N, H, W] or [N, 1, H, W], got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"the oracle was trained on {self.size}x{self.size} images, got {tuple(x.shape[-2:])}")
        if x.dtype == torch.uint8:
            return x.float() / 255
        if not x.is_floating_point():
            raise ValueError(f"oracle input must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
        x = x.float()
        # float images are read as [0, 1]: 0..255 floats would saturate every score silently
        if x.numel() and not (torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
            raise ValueError(f"float oracle input must be finite and in [0, 1] (pass uint8 for 0..255), got values in [{float(x.min()):g}, {float(x.max()):g}]")
        return x

    def probs(self, images, batch_size: int = 256) -> np.ndarray:
        """float32[N, K] class probabilities."""
        return predict_proba(self.net, self._input(images), batch_size)

    def positive(self, images, batch_size: int = 256) -> np.ndarray:
        """bool[N, K]: the oracle calls class k present (score above its class threshold)."""
        return self.probs(images, batch_size) > self.thresholds[None]

    @torch.no_grad()
    def features(self, images, batch_size: int = 256) -> torch.Tensor:
        """Penultimate features Tensor[N, 4 * width]."""
        from ltbench.utils.device import module_device

        x = self._input(images)
        dev = module_device(self.net)
        return torch.cat([self.net.features(x[i : i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, self.net.head.in_features)


def train_oracle(cfg: OracleConfig, out: str, size: int = 64, eval_phantom: PhantomConfig = PhantomConfig(), progress: bool = True) -> Oracle:
    """Train on ``cfg.n_images`` fresh phantom images and write ``out/oracle.pt`` and
    ``out/oracle.json`` (config, seconds, per-class AP on ``eval_phantom``'s test split)."""
    from sklearn.metrics import average_precision_score

    t0 = time.time()
    data = generate(PhantomConfig(n=cfg.n_images, seed=cfg.phantom_seed, size=size, min_test_positives=0))
    x = torch.from_numpy(data.images)[:, None].float() / 255
    y = torch.from_numpy(data.labels).float()
    torch.manual_seed(cfg.seed)
    pos_weight = balanced_pos_weight(y, cfg.max_pos_weight)
    net = SmallCNN(1, len(PAPER_CLASSES), cfg.width)
    fit_multilabel(net, x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, pos_weight=pos_weight, progress=progress, desc="oracle", augment=cfg.augment, max_blur=cfg.max_blur)
    cal = generate(PhantomConfig(n=cfg.n_calibration, seed=cfg.phantom_seed + 1, size=size, min_test_positives=0))
    thresholds = thresholds_at_fpr(Oracle(net, PAPER_CLASSES, size, {}).probs(cal.images), cal.labels, cfg.fpr)
    oracle = Oracle(net, PAPER_CLASSES, size, dataclasses.asdict(cfg), thresholds)
    test = generate(dataclasses.replace(eval_phantom, size=size))
    keep = test.split == "test"
    p = oracle.probs(test.images[keep])
    ap = {c: float(average_precision_score(test.labels[keep, k], p[:, k])) for k, c in enumerate(PAPER_CLASSES)}
    if is_main():  # under torchrun every rank trained the same network; rank 0 writes it
        os.makedirs(out, exist_ok=True)
        with atomic_path(os.path.join(out, WEIGHTS)) as tmp:
            torch.save({"state_dict": net.state_dict(), "classes": list(PAPER_CLASSES), "size": size, "config": dataclasses.asdict(cfg), "thresholds": torch.from_numpy(thresholds)}, tmp)
        pos = oracle.positive(test.images[keep])
        lab = test.labels[keep] == 1
        rates = {c: {"sensitivity": float(pos[lab[:, k], k].mean()), "false_positive_rate": float(pos[~lab[:, k], k].mean())} for k, c in enumerate(PAPER_CLASSES)}
        atomic_write_json(os.path.join(out, "oracle.json"), {"config": dataclasses.asdict(cfg), "size": size, "train_seconds": round(time.time() - t0, 1), "eval_phantom": dataclasses.asdict(eval_phantom), "test_average_precision": ap, "thresholds": dict(zip(PAPER_CLASSES, map(float, thresholds))), "test_rates": rates, "torch": torch.__version__})
    barrier()  # the files exist for every rank when it returns
    return oracle


def load_oracle(path: str = "phantom") -> Oracle:
    """``"phantom"`` (the shipped one), a folder holding ``oracle.pt``, or the file itself."""
    file = oracle_file(path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no oracle at {file}; train one with `ltbench oracle train --out {path}`")
    state = load_checkpoint(file, "oracle file")  # weights-only: a crafted file runs no code
    ok = (
        isinstance(state, dict)
        and isinstance(state.get("state_dict"), dict)
        and isinstance(state.get("classes"), list)
        and all(isinstance(c, str) for c in state["classes"])
        and isinstance(state.get("size"), int)
        and state["size"] > 0
        and isinstance(state.get("config"), dict)
        and isinstance(state["config"].get("width"), int)
        and state["config"]["width"] > 0
    )
    if not ok:
        raise ValueError(f"oracle file {file} is not an ltbench oracle (expected state_dict, classes, size and config.width, as `ltbench oracle train` writes)")
    thr = state.get("thresholds")
    if thr is not None and (not isinstance(thr, torch.Tensor) or thr.shape != (len(state["classes"]),)):
        raise ValueError(f"oracle file {file} has malformed thresholds")
    net = SmallCNN(1, len(state["classes"]), state["config"]["width"])
    try:
        net.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"oracle file {file} does not fit its own architecture ({str(exc).splitlines()[0]})") from None
    return Oracle(net, state["classes"], state["size"], state["config"], None if thr is None else thr.numpy())



def oracle_file(path: str = "phantom") -> str:
    """The weights file of ``"phantom"``, a folder holding ``oracle.pt``, or the file itself."""
    if path == "phantom":
        path = SHIPPED
    return os.path.join(path, WEIGHTS) if os.path.isdir(path) else path


def oracle_json(path: str = "phantom") -> dict:
    folder = SHIPPED if path == "phantom" else (path if os.path.isdir(path) else os.path.dirname(path))
    with open(os.path.join(folder, "oracle.json")) as f:
        return json.load(f)
