"""The ``paper-rehearsal`` preset's inputs: the ``paper`` preset's code path and shapes on
this machine.

* Data: CXR-Phantom-LT written as MIMIC-CXR-LT is laid out (MIMIC-CXR-JPG folders, the three
  ``miccai2023_mimic-cxr-lt_labels_{split}.csv`` files), 512 px images (rendered at 128 px
  and upsampled: rendering at 512 px costs 0.3 s an image here), read by the
  ``mimic-cxr-lt-paper`` dataset preset exactly as the real files are.
* Prior: a RoentGen-shaped pipeline: Stable Diffusion 1.x's architecture (a 4-level VAE with
  8x downsampling to 4x64x64 latents, scaling factor 0.18215; a UNet with SD 1.x's block
  types, cross-attention at the three finer levels; a CLIP text encoder; PNDM scheduler) at
  small widths, randomly initialised and written with ``save_pretrained``: the loading, encoding,
  sampling and decoding code run at the paper's tensor shapes. Its samples are noise: the
  rehearsal measures time and memory, not quality.

Both are written once under ``OUT/inputs`` (a lock: torchrun ranks and ``--shard`` copies share
them) and are not part of the committed results.
"""

import os

from ltbench.data.phantom import PhantomConfig
from ltbench.utils.lock import FileLock

REHEARSAL_PHANTOM = PhantomConfig(n=3000, size=128, seed=0, train_frac=0.5, val_frac=0.1, min_test_positives=1)
REHEARSAL_SIZE = 512


def make_roentgen_shaped_pipeline(root: str, seed: int = 0, image_size: int = REHEARSAL_SIZE) -> str:
    """Write a random Stable-Diffusion-1.x-shaped pipeline with small widths to ``root``."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from ltbench.prior.components import make_text_encoder, make_tokenizer

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),  # SD 1.x: (128, 256, 512, 512)
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,  # SD 1.x: 2
        sample_size=image_size,
        scaling_factor=0.18215,
    )
    tokenizer = make_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=image_size // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16, 16, 16),  # SD 1.x: (320, 640, 1280, 1280)
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,  # SD 1.x: 768 (CLIP ViT-L/14)
        layers_per_block=1,  # SD 1.x: 2
        attention_head_dim=8,
        norm_num_groups=8,
    )
    sched = PNDMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=make_text_encoder(len(tokenizer), seed), tokenizer=tokenizer, unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    tmp = root.rstrip("/") + ".partial"
    pipe.save_pretrained(tmp)
    os.replace(tmp, root)
    return root


def prepare_inputs(out: str, progress: bool = True) -> tuple[str, str]:
    """The rehearsal's data folder and pipeline folder under ``out/inputs`` (made once)."""
    from ltbench.data.phantom import write_phantom

    folder = os.path.join(out, "inputs")
    os.makedirs(folder, exist_ok=True)
    data, prior = os.path.join(folder, "mimic-cxr-lt"), os.path.join(folder, "roentgen-shaped")
    with FileLock(os.path.join(folder, ".lock")):
        write_phantom(REHEARSAL_PHANTOM, data, progress=progress, layout="mimic-cxr-lt", upsample_to=REHEARSAL_SIZE)
        if not os.path.isfile(os.path.join(prior, "model_index.json")):
            make_roentgen_shaped_pipeline(prior)
    return data, prior


__all__ = ["REHEARSAL_PHANTOM", "REHEARSAL_SIZE", "make_roentgen_shaped_pipeline", "prepare_inputs"]
