"""``smote``: SMOTE from imbalanced-learn, run one-vs-rest per tail class (imbalanced-learn's
SMOTE is single-label). Each synthetic sample interpolates from a tail example toward one of
its k nearest tail neighbours (imbalanced-learn's direction, not the sign-flipped one of a known
MLSMOTE script). Works on whatever ``X`` is (latents or pixels, flattened). The synthetic
sample is labelled with its tail class only: imbalanced-learn does not report which
neighbour was used, so the partner's other labels are unknown."""

import numpy as np
import torch

from ltbench.augment import Augmenter, register_augmenter
from ltbench.config import PAPER_N_PER_CLASS


@register_augmenter
class Smote(Augmenter):
    name = "smote"

    def __init__(self, classes, head, tail, n_per_class: int = PAPER_N_PER_CLASS, k_neighbors: int = 5, seed: int = 0, **_ignored):
        self.classes, self.head, self.tail = list(classes), list(head), list(tail)
        self.n_per_class, self.k_neighbors, self.seed = n_per_class, k_neighbors, seed

    def _generate(self, X, y):
        from imblearn.over_sampling import SMOTE

        flat = X.reshape(len(X), -1).numpy().astype(np.float64)
        out_x, out_y = [], []
        for c in self.tail:
            k = self.classes.index(c)
            target = y[:, k].astype(int)
            n_pos = int(target.sum())
            if n_pos < 2:
                raise ValueError(f"SMOTE needs at least 2 examples of tail class '{c}', it has {n_pos}")
            sm = SMOTE(sampling_strategy={1: n_pos + self.n_per_class}, k_neighbors=min(self.k_neighbors, n_pos - 1), random_state=self.seed)
            xr, _ = sm.fit_resample(flat, target)
            new = xr[len(flat) :]  # imbalanced-learn appends the synthetic rows
            lab = np.zeros((len(new), y.shape[1]), np.uint8)
            lab[:, k] = 1
            out_x.append(torch.from_numpy(new).float().reshape(len(new), *X.shape[1:]))
            out_y.append(lab)
        if not out_x:
            return torch.zeros((0, *X.shape[1:])), np.zeros((0, y.shape[1]), np.uint8)
        return torch.cat(out_x), np.concatenate(out_y)
