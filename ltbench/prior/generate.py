"""``ltbench generate``: text-to-image samples from a prior, written in the dataset layout
(``images/``, ``labels.csv`` with a ``prompt`` column, ``latents.npy``).

Sample i draws its initial noise from its own seed ``(seed, i)``, so samples depend neither on
the batch size nor on the number of torchrun processes: rank r makes every W-th sample, the
ranks gather them, rank 0 decodes and writes. A prompt's labels are the class names it
contains (the t2i baseline's convention)."""

import numpy as np
import torch


def run_generate(prompts: list, out: str, n: int = 8, classes=None, prior: str = "phantom", steps: int = 75, guidance: float = 4.0, seed: int = 0, batch_size: int = 16, device: str = "auto", precision: str = "auto", overwrite: bool = False, progress: bool = True) -> dict | None:
    """``n`` samples per prompt; returns {"n", "unet_evals_per_sample", "out"} on rank 0 (None
    on the other ranks)."""
    from ltbench.data.classes import PAPER_CLASSES
    from ltbench.data.writer import check_image_folder_out, write_decoded
    from ltbench.prior.pipeline import load_prior
    from ltbench.utils.dist import gather_shares, is_main, my_share, sample_generator

    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if is_main():
        check_image_folder_out(out, overwrite)  # refused before sampling, not after it
    classes = list(classes) if classes else list(PAPER_CLASSES)
    prompts = [p for p in prompts for _ in range(n)]
    pipe = load_prior(prior, device=device, precision=precision)
    mine = my_share(len(prompts))  # under torchrun: every W-th prompt; sample i's noise has its own seed
    noise = torch.stack([torch.randn(pipe.latent_shape, generator=sample_generator(seed, int(i))) for i in mine]) if len(mine) else None
    with pipe.count_unet() as cnt:
        part = pipe.text_to_image([prompts[i] for i in mine], steps=steps, guidance=guidance, batch_size=batch_size, progress=progress, noise=noise) if len(mine) else torch.zeros((0, *pipe.latent_shape))
    z = gather_shares({"z": part}, len(prompts))["z"]
    if not is_main():
        return None
    labels = np.array([[int(c.lower() in p.lower()) for c in classes] for p in prompts], dtype=np.uint8)
    write_decoded(out, pipe, z, labels, classes, extra={"prompt": prompts}, overwrite=overwrite)
    return {"n": len(prompts), "unet_evals_per_sample": cnt.rows / max(len(prompts), 1), "out": out}


__all__ = ["run_generate"]
