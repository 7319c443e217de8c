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


def fit_multilabel(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 6, batch_size: int = 64, lr: float = 3e-3, seed: int = 0, pos_weight: torch.Tensor | None = None, progress: bool = False, desc: str = "fit") -> nn.Module:
    """Train ``net`` on (x Tensor[N, ...], y Tensor[N, K] in {0,1}) with BCE-with-logits and
    Adam; seeded batch order. Returns ``net`` in eval mode."""
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            b = perm[i : i + batch_size]
            if len(b) < 2:
                continue
            loss = F.binary_cross_entropy_with_logits(net(x[b]), y[b], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def predict_proba(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    net.eval()
    return torch.cat([torch.sigmoid(net(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]).numpy()
