"""``oversample``: random oversampling of each tail class (exact copies of its examples, with
their labels): the "resampling" the paper's introduction argues against."""

import numpy as np

from ltbench.augment import Augmenter, register_augmenter
from ltbench.config import PAPER_N_PER_CLASS


@register_augmenter
class RandomOversampling(Augmenter):
    name = "oversample"

    def __init__(self, classes, head, tail, n_per_class: int = PAPER_N_PER_CLASS, seed: int = 0, **_ignored):
        self.classes, self.head, self.tail, self.n_per_class, self.seed = list(classes), list(head), list(tail), n_per_class, seed

    def _generate(self, X, y):
        rng = np.random.default_rng(self.seed)
        rows = []
        for c in self.tail:
            pos = np.flatnonzero(y[:, self.classes.index(c)] == 1)
            if len(pos) == 0:
                raise ValueError(f"tail class '{c}' has no examples to oversample")
            rows.append(rng.choice(pos, self.n_per_class, replace=True))
        idx = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        return X[idx], y[idx]
