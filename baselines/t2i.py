"""``t2i``: text-to-image from the diffusion prior, the paper's "RoentGEN@75": the tail class
name as the prompt, 75 steps, guidance 4 (RoentGen's model card). ``X`` must be latents of
the same prior; the samples are its latents, labelled with the prompted class."""

import numpy as np
import torch

from ltbench.augment import Augmenter, register_augmenter
from ltbench.config import PAPER_N_PER_CLASS, ROENTGEN_GUIDANCE, ROENTGEN_STEPS


@register_augmenter
class TextToImage(Augmenter):
    name = "t2i"

    def __init__(self, classes, head, tail, prior=None, n_per_class: int = PAPER_N_PER_CLASS, steps: int = ROENTGEN_STEPS, guidance: float = ROENTGEN_GUIDANCE, batch_size: int = 16, seed: int = 0, **_ignored):
        self.classes, self.head, self.tail, self.prior = list(classes), list(head), list(tail), prior
        self.n_per_class, self.steps, self.guidance, self.batch_size, self.seed = n_per_class, steps, guidance, batch_size, seed

    def _generate(self, X, y):
        if self.prior is None:
            raise ValueError("t2i needs a prior (e.g. load_prior('phantom') or a RoentGen folder)")
        if tuple(X.shape[1:]) != tuple(self.prior.latent_shape):
            raise ValueError(f"X must be latents of the prior, shape [N, {', '.join(map(str, self.prior.latent_shape))}], got {list(X.shape)}")
        out_x, out_y = [], []
        for j, c in enumerate(self.tail):
            z = self.prior.text_to_image([c] * self.n_per_class, steps=self.steps, guidance=self.guidance, seed=self.seed * 1000 + j, batch_size=self.batch_size)
            lab = np.zeros((len(z), y.shape[1]), np.uint8)
            lab[:, self.classes.index(c)] = 1
            out_x.append(z)
            out_y.append(lab)
        if not out_x:
            return torch.zeros((0, *X.shape[1:])), np.zeros((0, y.shape[1]), np.uint8)
        return torch.cat(out_x), np.concatenate(out_y)
