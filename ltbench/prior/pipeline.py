"""The diffusion prior: a local diffusers Stable Diffusion pipeline folder, loaded offline,
and the one generation API the method, the baselines and the harnesses use.

* ``text_to_image``: class-name prompts, N steps, classifier-free guidance (the ``t2i``
  baseline: 75 steps, guidance 4, RoentGen's model card) through diffusers' own
  ``StableDiffusionPipeline``.
* ``refine``: k steps on a given latent, conditioned on its labels (the paper's "@k").
  ``mode="tail"`` (the authors' code, our default): set the scheduler to N steps and run only
  its LAST k timesteps starting from the latent as it is, adding no noise. ``mode="sdedit"``:
  noise the latent to the level of the first of those k timesteps, then denoise them.
* ``decode`` / ``encode``: between scaled latents and images in [0, 1].
* UNet evaluations are counted per sample (classifier-free guidance doubles them).

``phantom`` wherever a prior path is accepted means the prior shipped in the package.
"""

import contextlib
import inspect
import json
import os
import pickle

import numpy as np
import torch

from ltbench.prior.vae import resolve_prior
from ltbench.config import REFINE_GUIDANCE, ROENTGEN_GUIDANCE, ROENTGEN_STEPS, check_value

COMPONENTS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")


def check_pipeline_folder(path: str) -> str:
    """Raise a clear error naming what a diffusers pipeline folder lacks."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"prior folder not found: {path}")
    index = os.path.join(path, "model_index.json")
    if not os.path.isfile(index):
        raise FileNotFoundError(f"{path} is not a diffusers pipeline folder: no model_index.json")
    try:
        with open(index) as f:
            listed = json.load(f)
        if not isinstance(listed, dict):
            raise ValueError("not a JSON object")
        missing = [c for c in COMPONENTS if c not in listed or listed[c] is None or listed[c][0] is None]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"{index} is malformed ({exc})") from None
    missing += [c for c in COMPONENTS if c not in missing and not os.path.isdir(os.path.join(path, c))]
    if missing:
        raise FileNotFoundError(f"prior {path} is incomplete: missing component(s) {missing} (a Stable Diffusion folder has {list(COMPONENTS)})")
    return path


def _dtype(precision: str, device: torch.device) -> torch.dtype:
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if precision not in table:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 is not supported on CPU; use fp32 or bf16")
    return table[precision]


class _Counter:
    def __init__(self):
        self.rows = 0


class Prior:
    """A loaded pipeline plus the generation API. Latents are in the UNet's (scaled) space."""

    def __init__(self, pipe, device: torch.device, dtype: torch.dtype, path: str):
        self.pipe, self.device, self.dtype, self.path = pipe, device, dtype, path
        self.pipe.set_progress_bar_config(disable=True)
        self._counters: list[_Counter] = []
        pipe.unet.register_forward_pre_hook(self._count)

    # ---- bookkeeping ----------------------------------------------------------------------
    def _count(self, module, args):
        rows = args[0].shape[0] if args else 0
        for c in self._counters:
            c.rows += rows

    @contextlib.contextmanager
    def count_unet(self):
        """``with prior.count_unet() as c: ...``; ``c.rows`` = UNet evaluations (batch rows)."""
        c = _Counter()
        self._counters.append(c)
        try:
            yield c
        finally:
            self._counters.remove(c)

    @property
    def scaling_factor(self) -> float:
        return float(self.pipe.vae.config.scaling_factor)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        s = self.pipe.unet.config.sample_size
        return (self.pipe.unet.config.in_channels, s, s)

    def _gen(self, seed):
        if isinstance(seed, torch.Generator) or seed is None:
            return seed
        return torch.Generator(device="cpu").manual_seed(int(seed))

    # ---- text ------------------------------------------------------------------------------
    def embed(self, prompts: list[str], guidance: float):
        cond, uncond = self.pipe.encode_prompt(list(prompts), self.device, 1, guidance > 1.0, negative_prompt=None)
        return cond, uncond

    # ---- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def text_to_image(self, prompts: list[str], steps: int = ROENTGEN_STEPS, guidance: float = ROENTGEN_GUIDANCE, seed=0, batch_size: int = 16, progress: bool = False, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample latents for ``prompts`` with the pipeline's own loop. -> Tensor[N, C, h, w]
        (fp32, cpu). The initial noise is drawn on the CPU from ``seed`` (identical across
        devices), or given: ``noise`` Tensor[N, C, h, w] (e.g. one seed per sample, so a sample
        does not depend on the batch or the number of processes; DDIM is deterministic)."""
        from tqdm.auto import tqdm

        self._check_schedule(steps, guidance)
        check_value("--batch-size", batch_size, int, ge=1)
        gen = self._gen(seed)
        c, s, _ = self.latent_shape
        if noise is not None and (tuple(noise.shape) != (len(prompts), c, s, s) or not torch.isfinite(noise).all()):
            raise ValueError(f"noise must be finite with shape [{len(prompts)}, {c}, {s}, {s}], got {list(noise.shape)}")
        out = []
        for i in tqdm(range(0, len(prompts), batch_size), desc="t2i", disable=not progress):
            chunk = list(prompts[i : i + batch_size])
            latents = (noise[i : i + batch_size] if noise is not None else torch.randn((len(chunk), c, s, s), generator=gen)).to(self.device, self.dtype)
            res = self.pipe(prompt=chunk, num_inference_steps=steps, guidance_scale=guidance, latents=latents, output_type="latent")
            out.append(res.images.float().cpu())
        return torch.cat(out) if out else torch.zeros((0, c, s, s))

    def _check_schedule(self, steps: int, guidance: float) -> None:
        """Refuse what diffusers would run silently wrong: steps outside [1, the training
        timesteps] (-1 used to write un-denoised noise), and guidance that is NaN, infinite or
        below 1 (diffusers then skips classifier-free guidance without a word; 1 = unguided)."""
        import math

        n = int(self.pipe.scheduler.config.num_train_timesteps)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= n:
            raise ValueError(f"steps must be an integer in [1, {n}], got {steps!r}")
        if not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 1:
            raise ValueError(f"guidance must be a finite number >= 1 (1 = unguided), got {guidance!r}")

    @torch.no_grad()
    def refine(self, latents: torch.Tensor, prompts: list[str], k: int, steps: int = ROENTGEN_STEPS, guidance: float = REFINE_GUIDANCE, mode: str = "tail", seed=0, batch_size: int = 16, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Run the last ``k`` of ``steps`` timesteps on ``latents`` (Tensor[N, C, h, w], scaled),
        conditioned on ``prompts``. ``k = 0`` returns the input unchanged. ``sdedit`` noises the
        latents first, with noise drawn from ``seed`` or given (``noise``, like ``latents``)."""
        if mode not in ("tail", "sdedit"):
            raise ValueError(f"refine mode must be 'tail' or 'sdedit', got {mode!r}")
        self._check_schedule(steps, guidance)
        check_value("batch_size", batch_size, int, ge=1)
        if not 0 <= k <= steps:
            raise ValueError(f"k must be in [0, steps={steps}], got {k}")
        if latents.ndim != 4 or tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(f"latents must have shape [N, {', '.join(map(str, self.latent_shape))}], got {list(latents.shape)}")
        if len(prompts) != len(latents):
            raise ValueError(f"{len(latents)} latents but {len(prompts)} prompts")
        if not torch.isfinite(latents).all():
            raise ValueError("latents contain NaN or inf")
        if noise is not None and tuple(noise.shape) != tuple(latents.shape):
            raise ValueError(f"noise must have the latents' shape {list(latents.shape)}, got {list(noise.shape)}")
        if k == 0:
            return latents.clone()
        gen = self._gen(seed)
        sched = self.pipe.scheduler.__class__.from_config(self.pipe.scheduler.config)
        sched.set_timesteps(steps, device=self.device)
        timesteps = sched.timesteps[-k:]
        step_kw = {}
        params = inspect.signature(sched.step).parameters
        if "eta" in params:
            step_kw["eta"] = 0.0
        out = []
        for i in range(0, len(latents), batch_size):
            x = latents[i : i + batch_size].to(self.device, self.dtype)
            chunk = list(prompts[i : i + batch_size])
            if mode == "sdedit":
                eps0 = (noise[i : i + batch_size] if noise is not None else torch.randn(x.shape, generator=gen)).to(self.device, self.dtype)
                x = sched.add_noise(x, eps0, timesteps[:1].repeat(len(x)))
            cond, uncond = self.embed(chunk, guidance)
            emb = torch.cat([uncond, cond]) if guidance > 1.0 else cond
            for t in timesteps:
                inp = torch.cat([x, x]) if guidance > 1.0 else x
                inp = sched.scale_model_input(inp, t)
                eps = self.pipe.unet(inp, t, encoder_hidden_states=emb).sample
                if guidance > 1.0:
                    e_u, e_c = eps.chunk(2)
                    eps = e_u + guidance * (e_c - e_u)
                x = sched.step(eps, t, x, **step_kw).prev_sample
            out.append(x.float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Scaled latents Tensor[N, C, h, w] -> images Tensor[N, 3, H, W] in [0, 1] (fp32, cpu)."""
        vae = self.pipe.vae
        check_value("batch_size", batch_size, int, ge=1)
        out = []
        for i in range(0, len(latents), batch_size):
            z = latents[i : i + batch_size].to(self.device, vae.dtype) / self.scaling_factor
            out.append(vae.decode(z).sample.float().cpu().add(1).div(2).clamp(0, 1))
        return torch.cat(out) if out else torch.zeros((0, 3, 0, 0))

    def decode_uint8(self, latents: torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """Scaled latents Tensor[N, C, h, w] -> gray uint8[N, H, W], decoded a batch at a time
        (a float copy of all decoded images would be 12x their uint8 bytes: 15 GB for 5,000
        samples at 512 px)."""
        from ltbench.data.images import to_uint8_gray

        parts = [to_uint8_gray(self.decode(latents[i : i + batch_size], batch_size=batch_size)) for i in range(0, len(latents), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0, 0), np.uint8)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 32, sample: bool = False, seed=0) -> torch.Tensor:
        """Images Tensor[N, 3, H, W] in [0, 1] -> scaled latents (posterior mean unless ``sample``)."""
        vae, gen = self.pipe.vae, self._gen(seed)
        check_value("batch_size", batch_size, int, ge=1)
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(self.device, vae.dtype) * 2 - 1
            dist = vae.encode(x).latent_dist
            z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen).to(dist.mean) if sample else dist.mean
            out.append((z * self.scaling_factor).float().cpu())
        return torch.cat(out)


def load_prior(path: str = "phantom", device: str = "auto", precision: str = "auto") -> Prior:
    """Load a Stable Diffusion pipeline folder (or ``phantom``) fully offline.

    ``precision``: ``auto`` (fp32 on CPU, bf16 on GPU), ``fp32``, ``fp16`` or ``bf16``."""
    from diffusers import StableDiffusionPipeline

    from ltbench.prior.vae import dtype_kwargs, resolve_device

    from ltbench.utils.weights import check_model_folder

    folder = check_pipeline_folder(resolve_prior(path))
    check_model_folder(folder)  # a crafted .bin is refused by name before diffusers reads it
    dev = resolve_device(device)
    dtype = _dtype(precision, dev)
    from diffusers.utils import logging as dlog

    dlog.disable_progress_bar()  # a loading bar per call is noise in every job's log
    try:
        pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None, feature_extractor=None, requires_safety_checker=False, **dtype_kwargs(dtype))
    except (OSError, ValueError, EnvironmentError, pickle.UnpicklingError, EOFError) as exc:
        raise RuntimeError(f"cannot load the prior in {folder}: {' '.join(str(exc).split())[:500]}") from exc
    finally:
        dlog.enable_progress_bar()
    return Prior(pipe.to(dev), dev, dtype, folder)
