"""Tiny seeded components for tests and benchmarks (diffusers' testing_utils habit)."""

import os

import torch


def make_tiny_vae_prior(root: str, seed: int = 0, block_out_channels=(8, 16), sample_size: int = 32) -> str:
    """Save a small randomly initialised ``AutoencoderKL`` to ``root/vae`` with
    ``save_pretrained``: the same on-disk format, and so the same loading code path, as a
    RoentGen or Stable Diffusion folder. Downsampling factor 2**(len(block_out_channels)-1)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(block_out_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        latent_channels=4,
        norm_num_groups=min(8, block_out_channels[0]),
        layers_per_block=1,
        sample_size=sample_size,
    )
    vae.save_pretrained(os.path.join(root, "vae"))
    return root
