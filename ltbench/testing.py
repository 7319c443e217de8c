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


def make_tiny_sd_pipeline(root: str, seed: int = 0, scheduler: str = "pndm") -> str:
    """A tiny random Stable Diffusion pipeline folder written with ``save_pretrained``: the
    RoentGen code path (SD 1.x folders ship a PNDM scheduler) at toy size."""
    from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from ltbench.prior.components import make_text_encoder, make_tokenizer

    make_tiny_vae_prior(root, seed=seed)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(os.path.join(root, "vae"))
    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    kw = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    sched = PNDMScheduler(**kw, skip_prk_steps=True, steps_offset=1) if scheduler == "pndm" else DDIMScheduler(**kw, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=make_text_encoder(len(tokenizer), seed), tokenizer=tokenizer, unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root)
    return root
