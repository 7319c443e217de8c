"""``t2i``: text-to-image from the diffusion prior, the paper's "RoentGEN@75": the tail class
name as the prompt, 75 steps, guidance 4 (RoentGen's model card). ``X`` must be latents of
the same prior; the samples are its latents, labelled with the prompted class.

Sample i of tail class c starts from noise of its own seed (``sample_seed(seed, c, i)``, c
the class's index in ``classes``) and
DDIM is deterministic, so a sample does not depend on the batch size or on the number of
processes: in a torchrun process group each rank makes every W-th sample and all ranks
gather the whole set."""

import numpy as np
import torch

from ltbench.augment import Augmenter, register_augmenter
from ltbench.config import PAPER_N_PER_CLASS, ROENTGEN_GUIDANCE, ROENTGEN_STEPS
from ltbench.utils.dist import gather_shares, my_share, sample_generator


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
        n, shape = self.n_per_class, tuple(self.prior.latent_shape)
        total = n * len(self.tail)
        if total == 0:
            return torch.zeros((0, *X.shape[1:]), device="cpu"), np.zeros((0, y.shape[1]), np.uint8)
        mine = my_share(total)  # flat index j * n + i
        out = []
        for j, c in enumerate(self.tail):
            idx = mine[mine // n == j] % n
            if len(idx) == 0:
                continue
            k = self.classes.index(c)
            # drawn on the CPU (sample_generator's device) and moved by the prior: the same
            # starting noise, and so the same samples, on every device
            noise = torch.stack([torch.randn(shape, generator=sample_generator(self.seed, k, int(i)), device="cpu") for i in idx])
            out.append(self.prior.text_to_image([c] * len(idx), steps=self.steps, guidance=self.guidance, noise=noise, batch_size=self.batch_size))
        z = gather_shares({"z": torch.cat(out) if out else torch.zeros((0, *shape), device="cpu")}, total)["z"]
        lab = np.zeros((total, y.shape[1]), np.uint8)
        for j, c in enumerate(self.tail):
            lab[j * n : (j + 1) * n, self.classes.index(c)] = 1
        return z, lab
