"""Small networks that run on a 2-core CPU: the phantom's learnability check, the prior's
quality judge, and the CPU preset of the method's classifier."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    """Four conv blocks (conv-BN-ReLU, max-pool on the first three) and a linear head.
    Tensor[B, in_ch, H, W] -> logits Tensor[B, n_classes]; ``features`` gives the pooled
    penultimate vector Tensor[B, 4 * width]."""

    def __init__(self, in_ch: int = 1, n_classes: int = 10, width: int = 16):
        super().__init__()
        w = width
        layers = []
        for i, (a, b) in enumerate([(in_ch, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w)]):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(4 * w, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def degrade(x: torch.Tensor, g: torch.Generator, max_blur: float = 1.2, max_noise: float = 0.03, p: float = 0.5) -> torch.Tensor:
    """Random acquisition/codec changes that keep every finding, for training a judge:
    per image, with probability ``p`` each, a Gaussian blur (sigma ~ U(0.3, max_blur) px; also
    what an autoencoder's smoothing and denoising look like), added Gaussian noise (sigma ~
    U(0, max_noise)), and a small gain/offset change; then 8-bit quantisation.
    x: Tensor[B, 1, H, W] in [0, 1] -> the same shape.

    Why: a judge trained on the renderer's exact texture alone reads texture. The phantom
    oracle trained without this called Cardiomegaly on 95% of negatives after a 3x3 blur and
    lost Tortuous Aorta entirely (85% -> 1%), so it could not judge any decoded image."""
    b = len(x)
    if b == 0:
        return x
    u = torch.rand(b, 6, generator=g)
    sigma = torch.where(u[:, 0] < p, 0.3 + u[:, 1] * (max_blur - 0.3), torch.zeros(b))
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # [B, 5]
    k = k / k.sum(1, keepdim=True)
    xp = F.pad(x.transpose(0, 1), (2, 2, 2, 2), mode="replicate")  # [1, B, H+4, W+4]: one group per image
    x = F.conv2d(F.conv2d(xp, k[:, None, None, :], groups=b), k[:, None, :, None], groups=b).transpose(0, 1)
    noise = torch.where(u[:, 2] < p, u[:, 3] * max_noise, torch.zeros(b))
    x = x + noise[:, None, None, None] * torch.randn(x.shape, generator=g)
    gain = torch.where(u[:, 4] < p, 0.95 + 0.1 * u[:, 5], torch.ones(b))
    x = (x - 0.5) * gain[:, None, None, None] + 0.5
    return (x.clamp(0, 1) * 255).round() / 255


def balanced_pos_weight(y: torch.Tensor, cap: float = 50.0) -> torch.Tensor:
    """Class-balanced BCE weights float[K] = negatives / positives per class, capped so the
    rarest class does not dominate (y Tensor[N, K] in {0, 1})."""
    pos = y.sum(0).clamp_min(1)
    return ((len(y) - pos) / pos).clamp(max=cap)


def thresholds_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> np.ndarray:
    """Per-class score threshold float[K] passing a share ``fpr`` of each class's real
    negatives (scores, labels [N, K])."""
    return np.array([np.quantile(scores[labels[:, k] == 0, k], 1.0 - fpr) for k in range(labels.shape[1])])


def fit_multilabel(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 6, batch_size: int = 64, lr: float = 3e-3, seed: int = 0, pos_weight: torch.Tensor | None = None, progress: bool = False, desc: str = "fit", augment: bool = False, max_blur: float = 1.2) -> nn.Module:
    """Train ``net`` on (x Tensor[N, ...], y Tensor[N, K] in {0,1}) with BCE-with-logits and
    Adam; seeded batch order. ``augment``: each batch goes through ``degrade`` (x Tensor[N, 1,
    H, W] in [0, 1]). Returns ``net`` in eval mode."""
    from tqdm.auto import tqdm

    from ltbench.utils.dist import average_buffers, ddp_loss_scale, group_rank_world, local_rows, wrap_ddp

    world = group_rank_world()[1]
    g = torch.Generator().manual_seed(seed)
    model = wrap_ddp(net)  # torchrun: each rank trains on its rows of every global batch
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            b = perm[i : i + batch_size]
            if len(b) < 2 * world:
                continue
            # the global batch's degradations, drawn as one process draws them; this rank's rows
            xb = degrade(x[b], g, max_blur=max_blur) if augment else x[b]
            loss = F.binary_cross_entropy_with_logits(model(local_rows(xb)), local_rows(y[b]), pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            (loss * ddp_loss_scale(len(local_rows(b)), len(b))).backward()
            opt.step()
    average_buffers(net)
    return net.eval()


@torch.no_grad()
def predict_proba(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """float32[N, K] sigmoid scores of ``x`` [N, ...] (a CPU tensor), batch by batch on the
    network's device."""
    from ltbench.utils.device import module_device

    net.eval()
    dev = module_device(net)
    return torch.cat([torch.sigmoid(net(x[i : i + batch_size].to(dev, non_blocking=True))).cpu() for i in range(0, len(x), batch_size)]).numpy()
