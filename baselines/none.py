"""``none``: no augmentation (the paper's Baseline row)."""

import numpy as np
import torch

from ltbench.augment import Augmenter, register_augmenter


@register_augmenter
class NoAugmentation(Augmenter):
    name = "none"

    def __init__(self, classes=None, head=None, tail=None, n_per_class: int = 0, seed: int = 0, **_ignored):
        self.classes, self.head, self.tail, self.n_per_class, self.seed = classes, head, tail, n_per_class, seed

    def _generate(self, X, y):
        return torch.zeros((0, *X.shape[1:])), np.zeros((0, y.shape[1]), np.uint8)
