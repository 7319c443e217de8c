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


TABLE1_MEMORY_SCRIPT = """
import json, sys
import torch
from ltbench.eval.classifier import ClassifierConfig
from ltbench.reproduce.presets import Table1Preset
from ltbench.reproduce.table1 import run_table1
from ltbench.utils.memory import rss_mb

data, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
preset = Table1Preset(name="memory", data_root=data, image_size=size, oracle=None, rows=("none",), seeds=1,
                      classifier=ClassifierConfig(input_size=32, steps=3, warm_steps=3, batch_size=8, eval_batch_size=64))
import torchvision, diffusers  # noqa: F401 - imported before the baseline, like the run's own imports
base = rss_mb()
run_table1(preset, out, progress=False)
run = json.load(open(out + "/run.json"))["invocations"][-1]  # the run's own per-stage peaks (it resets VmHWM per stage)
print(json.dumps({"delta_mb": run["peak_rss_mb"] - base, "peak_mb": run["peak_rss_mb"], "stages": run["stage_peak_rss_mb"]}))
"""


def table1_stage_memory(data: str, out: str, size: int) -> dict:
    """Peak RSS of Table 1's streaming stages (data, the classifier's warm start and row, the
    test split's scoring: the ``none`` row) on the phantom files in ``data``, in a fresh
    process: {"delta_mb": peak - RSS after imports, "peak_mb", "stages": per-stage peaks}."""
    import json
    import subprocess
    import sys

    # large blocks straight from mmap, so freed memory leaves the process (glibc's heap would
    # otherwise keep fragments and the peak wander between runs)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", TABLE1_MEMORY_SCRIPT, data, out, str(size)], capture_output=True, text=True, env=env, timeout=1200)
    if r.returncode != 0:
        raise RuntimeError(f"table1 memory probe failed: {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])
