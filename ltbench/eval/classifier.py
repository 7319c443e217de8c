"""The head/tail mAP harness: torchvision's DenseNet121 trained on train + generated samples
with ONE recipe for every row of Table 1, evaluated on the test split by per-class average
precision (sklearn), then mean over head and over tail classes; cells over seeds are reported
as mean and a 95% t-interval (one seed: the value, no interval).

The budget is a fixed number of optimiser steps (``steps`` x ``batch_size`` images drawn with
replacement), not epochs: a row that adds samples gets no extra compute. DenseNet121 is
trained from scratch (no weights are downloaded), single-channel input."""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ClassifierConfig:
    arch: str = "densenet121"  # torchvision architecture (the paper's classifier)
    input_size: int = 32  # px the images are resized to (area); the paper trains at 224+
    steps: int = 150  # optimiser steps: the budget, the same for every row
    batch_size: int = 64
    lr: float = 2e-3  # peak of a one-cycle schedule, AdamW
    weight_decay: float = 1e-4
    mean: float = 0.5  # input normalisation of [0, 1] images
    std: float = 0.25
    eval_batch_size: int = 256

    def __post_init__(self):
        if self.arch not in ("densenet121",):
            raise ValueError(f"classifier arch must be 'densenet121', got {self.arch!r}")
        if self.steps < 1 or self.batch_size < 2 or self.input_size < 16:
            raise ValueError("steps >= 1, batch_size >= 2 and input_size >= 16 are required")


def make_densenet(n_classes: int, in_ch: int = 1) -> torch.nn.Module:
    import torchvision

    net = torchvision.models.densenet121(weights=None, num_classes=n_classes)
    net.features.conv0 = torch.nn.Conv2d(in_ch, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def _prep(x: torch.Tensor, cfg: ClassifierConfig) -> torch.Tensor:
    """uint8 [B, H, W] / [B, 1, H, W] or float in [0, 1] -> normalised float [B, 1, s, s]."""
    if x.ndim == 3:
        x = x[:, None]
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if x.shape[-1] != cfg.input_size or x.shape[-2] != cfg.input_size:
        x = F.interpolate(x, size=(cfg.input_size, cfg.input_size), mode="area")
    return ((x - cfg.mean) / cfg.std).contiguous(memory_format=torch.channels_last)


def _as_images(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[1] != 1):
        raise ValueError(f"images must be grayscale [N, H, W] or [N, 1, H, W], got {tuple(x.shape)}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError("images contain NaN or inf")
    return x


def train_classifier(images, labels, cfg: ClassifierConfig = ClassifierConfig(), seed: int = 0, device: str = "cpu", progress: bool = False, desc: str = "densenet121") -> torch.nn.Module:
    """Train on images [N, H, W] (uint8 or float [0, 1]) and 0/1 labels [N, K]; seeded init and
    batch draws. Returns the network in eval mode."""
    from tqdm.auto import tqdm

    x = _as_images(images)
    y = torch.as_tensor(np.asarray(labels)).float()
    if y.ndim != 2 or len(y) != len(x):
        raise ValueError(f"labels must be [N, K] with N = {len(x)}, got {tuple(y.shape)}")
    if len(x) == 0:
        raise ValueError("no training images")
    torch.manual_seed(seed)
    net = make_densenet(y.shape[1]).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in tqdm(range(cfg.steps), desc=desc, unit="step", disable=not progress, leave=False):
        b = torch.randint(0, len(x), (cfg.batch_size,), generator=g)
        loss = F.binary_cross_entropy_with_logits(net(_prep(x[b], cfg).to(device)), y[b].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: torch.nn.Module, images, cfg: ClassifierConfig = ClassifierConfig(), device: str = "cpu") -> np.ndarray:
    """float32[N, K] probabilities."""
    x = _as_images(images)
    net.eval()
    out = [torch.sigmoid(net(_prep(x[i : i + cfg.eval_batch_size], cfg).to(device))).cpu() for i in range(0, len(x), cfg.eval_batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def average_precisions(y_true, scores, classes) -> dict:
    """Per-class average precision (sklearn ``average_precision_score``); a class without a
    positive in ``y_true`` is an error (its AP is undefined)."""
    from sklearn.metrics import average_precision_score

    y_true, scores = np.asarray(y_true), np.asarray(scores)
    if y_true.shape != scores.shape or y_true.ndim != 2 or y_true.shape[1] != len(classes):
        raise ValueError(f"labels {y_true.shape} and scores {scores.shape} must both be [N, {len(classes)}]")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    missing = [c for k, c in enumerate(classes) if y_true[:, k].sum() == 0]
    if missing:
        raise ValueError(f"no positive test example for {missing}: average precision is undefined")
    return {c: float(average_precision_score(y_true[:, k], scores[:, k])) for k, c in enumerate(classes)}


def head_tail_map(ap: dict, head, tail) -> dict:
    return {"head_map": float(np.mean([ap[c] for c in head])), "tail_map": float(np.mean([ap[c] for c in tail]))}


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean and two-sided Student-t interval over seeds: {"mean", "lo", "hi", "n"}; with one
    value lo = hi = None (no interval is invented)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(v.mean())
    if len(v) < 2:
        return {"mean": m, "lo": None, "hi": None, "n": 1}
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(len(v))}
