"""``ltbench prior train --preset phantom``: train the shipped phantom prior.

A Stable-Diffusion-format pipeline (VAE, conditional UNet, text encoder, tokenizer, DDIM
scheduler) trained from scratch on CXR-Phantom-LT. Stage 1 trains the VAE (reconstruction +
a small KL, as SD's), fixes ``scaling_factor`` = 1 / std of the latents; stage 2 trains the
UNet and the text encoder jointly on noise prediction with 10% empty prompts for
classifier-free guidance, keeping an EMA of the UNet whose weights are shipped.

The prior is trained on its own phantom sample (``phantom_seed``, not the benchmark's seed),
so it never sees the benchmark's images, like RoentGen never saw the user's test set; that
sample has the same long tail, so the prior, like RoentGen, has seen few tail images.

All randomness (init, batches, noise, timesteps, dropout) comes from ``seed`` through one
generator whose state is checkpointed: a killed run resumes and ends with the same weights.

Under ``torchrun --nproc_per_node=N ltbench prior train`` every rank draws the same global
batches and trains on its rows of them in DistributedDataParallel (both stages; the VAE and
the UNet use GroupNorm, so N processes follow one process up to float summation order);
rank 0 writes the checkpoints and the pipeline.
"""

import dataclasses
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ltbench.data.phantom import PhantomConfig, generate
from ltbench.prior.components import make_schedulers, make_text_encoder, make_tokenizer, make_unet, make_vae, prompt_for
from ltbench.utils.dist import barrier, ddp_loss_scale, is_main, local_rows, wrap_ddp
from ltbench.utils.io import atomic_path, atomic_write_json, check_replaceable, claim_partial, swap_into_place

from ltbench.config import Config, opt

log = logging.getLogger("ltbench.prior.train")


@dataclass(frozen=True)
class PriorTrainConfig(Config):
    n_images: int = opt(10_000, "phantom images rendered (split \"all\": all of them are training images)", ge=1, le=10_000_000)
    phantom_seed: int = opt(1000, "not the benchmark's seed: the prior never sees benchmark images", ge=0)
    size: int = opt(64, "px; the default preset's resolution", ge=16, le=512)
    split: str = opt("all", "\"all\" images of the sample, or only its \"train\" split (with train_frac/val_frac: the benchmark's own train images, as a user fine-tunes a prior on theirs)", choices=("all", "train"))
    train_frac: float = opt(0.7, "split \"train\": the phantom's train fraction (Table 1's default preset: 0.35)", ge=0, le=1)
    val_frac: float = opt(0.1, "split \"train\": the phantom's val fraction (Table 1's default preset: 0.05)", ge=0, le=1)
    vae_channels: tuple = opt((16, 32, 32), "VAE block widths; len - 1 stride-2 levels (x4: 16x16 latents at 64 px)", ge=1, le=4096)
    latent_channels: int = opt(8, "latent channels C (Stable Diffusion: 4; with 4 at x4 the faint findings did not survive)", ge=1, le=1024)
    seed: int = opt(0, "init, batch order, noise, timesteps, prompt dropout", ge=0)
    vae_steps: int = opt(3500, "VAE optimiser steps (cosine-decayed rate)", ge=0)
    vae_batch: int = opt(32, "images per VAE step", ge=1, le=1 << 20)
    vae_lr: float = opt(1e-3, "small models tolerate a high rate; AdamW", gt=0, le=10)
    kl_weight: float = opt(1e-6, "SD's VAE: a nearly deterministic autoencoder", ge=0)
    finding_weight: float = opt(20.0, "extra MSE weight inside the findings' ground-truth masks: small, faint findings are most of what matters and least of the pixels", ge=0)
    perceptual_weight: float = opt(0.05, "feature-matching loss in a phantom classifier's layers (LPIPS's role in SD's VAE); 0 = pixels only", ge=0)
    perceptual_epochs: int = opt(3, "that classifier's training (its own net, not the oracle or the judge)", ge=0, le=10_000)
    unet_steps: int = opt(3000, "UNet + text encoder optimiser steps", ge=0)
    unet_batch: int = opt(64, "latents per UNet step", ge=1, le=1 << 20)
    unet_lr: float = opt(1e-3, "UNet + text encoder rate, AdamW", gt=0, le=10)
    ema_decay: float = opt(0.999, "the shipped UNet is the EMA of the trained one", ge=0, le=1)
    cond_dropout: float = opt(0.1, "empty prompt this often, for classifier-free guidance", ge=0, lt=1)
    tail_balance: float = opt(0.75, "UNet batches drawn with weight prevalence^-this of an image's rarest label (0 = uniform, 1 = every class equally often); 0.5 left Tortuous Aorta out of text-to-image, 1.0 lost Fracture", ge=0, le=1)
    checkpoint_every: int = opt(200, "steps between resumable checkpoints", ge=1)
    unet_storage_dtype: str = opt("float16", "the saved UNet's dtype: halves the shipped file; loaders cast to their precision", choices=("float16", "bfloat16", "float32"))


PRESETS = {
    "phantom": PriorTrainConfig(),
    # what a real user has: their own train split (Table 1's default phantom: seed 0, 20,000
    # images, 35% train) and no ground-truth finding masks in the loss
    "phantom-train-split": PriorTrainConfig(n_images=20_000, phantom_seed=0, split="train", train_frac=0.35, val_frac=0.05, finding_weight=0.0),
}


def training_phantom(cfg: PriorTrainConfig):
    """The prior's training sample: (PhantomConfig, the rendered images as ``generate`` returns
    them). Split ``all``: every image of a sample of its own seed; ``train``: the train split of
    ``PhantomConfig(n_images, phantom_seed, size, train_frac, val_frac)``, exactly as Table 1
    renders it."""
    from ltbench.data.phantom import make_labels

    if cfg.split == "all":
        phantom = PhantomConfig(n=cfg.n_images, seed=cfg.phantom_seed, size=cfg.size, min_test_positives=0)
        return phantom, generate(phantom)
    if cfg.split != "train":
        raise ValueError(f"split must be 'all' or 'train', got {cfg.split!r}")
    phantom = PhantomConfig(n=cfg.n_images, seed=cfg.phantom_seed, size=cfg.size, train_frac=cfg.train_frac, val_frac=cfg.val_frac)
    _, split = make_labels(phantom)
    return phantom, generate(phantom, indices=np.flatnonzero(split == "train"))


def train_perceptual_net(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int) -> torch.nn.Module:
    """A SmallCNN trained to find the ten findings on the prior's own sample, with the judges'
    degradations; its layers are the VAE's perceptual space. Frozen, eval mode."""
    from ltbench.nets import SmallCNN, balanced_pos_weight, fit_multilabel

    x = torch.from_numpy(images).float()[:, None] / 255
    y = torch.from_numpy(labels).float()
    torch.manual_seed(seed)
    net = fit_multilabel(SmallCNN(1, y.shape[1], 16), x, y, epochs=epochs, seed=seed, pos_weight=balanced_pos_weight(y), augment=True, max_blur=0.8)
    return net.eval().requires_grad_(False)


def perceptual_loss(net: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over the net's four blocks of ||f(a) - f(b)||^2 / mean f(a)^2; a, b Tensor[B, 3, H,
    W] in [-1, 1] (the VAE's space, gray replicated)."""
    fa, fb = a.mean(1, keepdim=True) * 0.5 + 0.5, b.mean(1, keepdim=True) * 0.5 + 0.5
    loss, n = a.new_zeros(()), 0
    for layer in net.body:
        fa, fb = layer(fa), layer(fb)
        if isinstance(layer, torch.nn.ReLU):
            loss = loss + (fa - fb).pow(2).mean() / fa.pow(2).mean().clamp_min(1e-8)
            n += 1
    return loss / n


def _to_input(images: np.ndarray, idx) -> torch.Tensor:
    x = torch.from_numpy(images[idx]).float().div(127.5).sub(1.0)
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def _save(path: str, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def unet_sampling_weights(labels: np.ndarray, balance: float) -> torch.Tensor:
    """float64[N]: an image's weight is prevalence^-balance of its rarest positive label (1 for
    an image with none). balance 0 = uniform; 0.5 raises a 0.3%-class's share about 10x."""
    prev = labels.mean(0).clip(1.0 / len(labels), None)
    w = np.where(labels == 1, prev[None] ** -balance, 1.0).max(1)
    return torch.from_numpy(w / w.sum())


class _VAEStep(torch.nn.Module):
    """One VAE training forward (encode, reparameterise with the given noise, decode) as a
    module, so DistributedDataParallel sees every parameter it trains in one forward."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        post = self.vae.encode(x).latent_dist
        return self.vae.decode(post.mean + post.std * eps).sample, post.kl()


class _Denoiser(torch.nn.Module):
    """UNet conditioned on the text encoder's states: the stage-2 forward, for DDP."""

    def __init__(self, unet, text_encoder):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.unet(noisy, t, self.text_encoder(tokens)[0]).sample


def _is_prior(folder: str) -> bool:
    """A prior written by ``ltbench prior train`` before output markers existed (the shipped
    one): its training_config.json records the preset's config."""
    import json

    try:
        with open(os.path.join(folder, "training_config.json")) as f:
            return "preset_config" in json.load(f)
    except (OSError, ValueError, TypeError):
        return False


_CHECKPOINT_KEYS = ("config", "stage", "step", "vae", "vae_opt", "gen")


def _load_checkpoint(path: str) -> dict:
    """A prior-training checkpoint, weights-only; anything else (crafted, empty, truncated, a
    plain tensor) is a one-line ``ValueError`` naming the file."""
    from ltbench.utils.weights import load_checkpoint

    state = load_checkpoint(path, "prior checkpoint")
    if not isinstance(state, dict) or any(k not in state for k in _CHECKPOINT_KEYS) or state["stage"] not in ("vae", "unet") or not isinstance(state["step"], int):
        raise ValueError(f"prior checkpoint {path} is not an ltbench prior-training checkpoint (expected {list(_CHECKPOINT_KEYS)}); delete it or use another --work-dir")
    return state


def train_prior(cfg: PriorTrainConfig, out: str, work_dir: str, progress: bool = True) -> str:
    """Train and write the pipeline folder ``out``; checkpoints go to ``work_dir``."""
    from diffusers import StableDiffusionPipeline
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    storage = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(cfg.unet_storage_dtype)
    if storage is None:  # checked before training, not after it
        raise ValueError(f"unet_storage_dtype must be float16, bfloat16 or float32, got {cfg.unet_storage_dtype!r}")
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    ckpt_path = os.path.join(work_dir, "checkpoint.pt")
    os.makedirs(work_dir, exist_ok=True)
    if is_main():  # before hours of training: never replace a folder ltbench did not write
        check_replaceable(out, True, legacy=_is_prior, option="--out")
    state = _load_checkpoint(ckpt_path) if os.path.exists(ckpt_path) else None  # tensors and plain containers only: no code from a file
    if state is not None and state["config"] != dataclasses.asdict(cfg):
        raise ValueError(f"{ckpt_path} was written with another config; delete {work_dir} or use another --work-dir")

    phantom, data = training_phantom(cfg)
    n_train = len(data.images)
    tokenizer = make_tokenizer()
    prompts = [prompt_for(row) for row in data.labels]
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids

    down = 2 ** (len(cfg.vae_channels) - 1)
    vae = make_vae(cfg.seed, cfg.size, cfg.vae_channels, cfg.latent_channels)
    unet, text_encoder = make_unet(cfg.seed, cfg.size // down, cfg.latent_channels), make_text_encoder(len(tokenizer), cfg.seed)
    train_sched, infer_sched = make_schedulers()
    g = torch.Generator().manual_seed(cfg.seed)
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    stage, step = "vae", 0
    perc = train_perceptual_net(data.images, data.labels, cfg.perceptual_epochs, cfg.seed) if cfg.perceptual_weight > 0 and (state is None or state["stage"] == "vae") else None
    finding = data.masks.any(1)  # bool[N, S, S]: where any finding was drawn
    if state is not None:
        stage, step = state["stage"], state["step"]
        vae.load_state_dict(state["vae"])
        vae_opt.load_state_dict(state["vae_opt"])
        g.set_state(state["gen"])
        log.info("resuming prior training at stage %s step %d", stage, step)

    def checkpoint(extra=None):  # rank 0 writes; every rank holds the same state
        if is_main():
            _save(ckpt_path, {"config": dataclasses.asdict(cfg), "stage": stage, "step": step, "vae": vae.state_dict(), "vae_opt": vae_opt.state_dict(), "gen": g.get_state(), **(extra or {})})

    # ---- stage 1: VAE ------------------------------------------------------------------
    if stage == "vae":
        vae.train()
        vae_step = wrap_ddp(_VAEStep(vae))
        with tqdm(total=cfg.vae_steps, initial=step, desc="prior vae", disable=not progress) as bar:
            while step < cfg.vae_steps:
                for group in vae_opt.param_groups:  # cosine decay, a function of the step (resumable)
                    group["lr"] = float(cfg.vae_lr * 0.5 * (1 + np.cos(np.pi * step / cfg.vae_steps)))  # a Python float: checkpoints load weights-only
                # the global batch and its noise, drawn as one process draws them; this rank's rows
                idx = torch.randint(0, n_train, (cfg.vae_batch,), generator=g).numpy()
                eps = torch.randn((cfg.vae_batch, cfg.latent_channels, cfg.size // down, cfg.size // down), generator=g)
                mine = local_rows(idx)
                x = _to_input(data.images, mine)
                rec, kl = vae_step(x, local_rows(eps))
                w = 1.0 + cfg.finding_weight * torch.from_numpy(finding[mine]).float()[:, None]
                loss = ((rec - x).pow(2) * w).mean() / w.mean() + cfg.kl_weight * kl.mean()
                if perc is not None:
                    loss = loss + cfg.perceptual_weight * perceptual_loss(perc, x, rec)
                vae_opt.zero_grad(set_to_none=True)
                (loss * ddp_loss_scale(len(mine), len(idx))).backward()
                vae_opt.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
                if step % cfg.checkpoint_every == 0 or step == cfg.vae_steps:
                    checkpoint()
        stage, step = "unet", 0
        checkpoint()
    vae.eval().requires_grad_(False)

    # ---- latents of the whole sample (posterior mean and std), then the scaling factor --
    means, stds = [], []
    with torch.no_grad():
        for s in range(0, n_train, 256):
            post = vae.encode(_to_input(data.images, np.arange(s, min(s + 256, n_train)))).latent_dist
            means.append(post.mean)
            stds.append(post.std)
    mean, std = torch.cat(means), torch.cat(stds)
    scaling = float(1.0 / mean.std())
    vae.register_to_config(scaling_factor=scaling)

    # ---- stage 2: UNet + text encoder ---------------------------------------------------
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    if state is not None and state["stage"] == "unet" and "unet" in state:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        opt.load_state_dict(state["opt"])
        ema.load_state_dict(state["ema"])
    unet.train()
    text_encoder.train()
    denoiser = wrap_ddp(_Denoiser(unet, text_encoder))
    weights = unet_sampling_weights(data.labels, cfg.tail_balance)
    with tqdm(total=cfg.unet_steps, initial=step, desc="prior unet", disable=not progress) as bar:
        while step < cfg.unet_steps:
            b = torch.multinomial(weights, cfg.unet_batch, replacement=True, generator=g)
            z = (mean[b] + std[b] * torch.randn(mean[b].shape, generator=g)) * scaling
            noise = torch.randn(z.shape, generator=g)
            t = torch.randint(0, train_sched.config.num_train_timesteps, (len(b),), generator=g)
            drop = torch.rand(len(b), generator=g) < cfg.cond_dropout
            tok = torch.where(drop[:, None], empty, ids[b])
            z, noise, t, tok = (local_rows(v) for v in (z, noise, t, tok))  # this rank's rows of the global batch
            pred = denoiser(train_sched.add_noise(z, noise, t), t, tok)
            loss = F.mse_loss(pred, noise)
            opt.zero_grad(set_to_none=True)
            (loss * ddp_loss_scale(len(z), len(b))).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema.step(unet.parameters())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.unet_steps:
                checkpoint({"unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict()})

    ema.copy_to(unet.parameters())
    if not is_main():  # rank 0 writes the pipeline; the others wait for it
        barrier()
        return out
    unet.to(storage)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(), scheduler=infer_sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    tmp = out.rstrip("/") + ".partial"
    claim_partial(tmp, "prior", legacy=_is_prior)
    pipe.save_pretrained(tmp, safe_serialization=True)
    atomic_write_json(os.path.join(tmp, "training_config.json"), {"preset_config": dataclasses.asdict(cfg), "phantom": dataclasses.asdict(phantom), "scaling_factor": scaling, "train_seconds": round(time.time() - t0, 1), "torch": torch.__version__})
    swap_into_place(tmp, out, legacy=_is_prior)  # the old pipeline is deleted only once the new one is in place
    log.info("prior written to %s in %.0fs", out, time.time() - t0)
    barrier()
    return out


__all__ = ["PRESETS", "PriorTrainConfig", "train_prior"]
