"""Loading the VAE of a local diffusers folder (RoentGen, Stable Diffusion, a test model)."""

import json
import os
from importlib import resources

import torch

from ltbench.utils.io import sha256_file

SHIPPED = ("phantom",)  # prior names that mean a folder shipped inside the package


def resolve_prior(path: str) -> str:
    """A prior name (``phantom``) or a folder -> the folder."""
    if path in SHIPPED:
        folder = str(resources.files("ltbench.prior") / path)
        if not os.path.isfile(os.path.join(folder, "model_index.json")):
            raise FileNotFoundError(f"the shipped prior '{path}' is missing from {folder}; reinstall ltbench or retrain it with `ltbench prior train --preset {path}`")
        return folder
    return path


WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors")


def vae_folder(path: str) -> str:
    """``PATH/vae`` of a pipeline folder, or ``PATH`` itself when it is a VAE folder."""
    path = resolve_prior(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"prior not found: {path}")
    for cand in (os.path.join(path, "vae"), path):
        if os.path.isfile(os.path.join(cand, "config.json")):
            return cand
    raise FileNotFoundError(f"no VAE in {path}: expected {os.path.join(path, 'vae', 'config.json')} (a diffusers pipeline folder) or {os.path.join(path, 'config.json')}")


def vae_identity(path: str) -> dict:
    """What identifies the VAE's latents: its folder, config and weights checksums."""
    folder = vae_folder(path)
    weights = [w for w in WEIGHT_FILES if os.path.isfile(os.path.join(folder, w))]
    if not weights:
        raise FileNotFoundError(f"VAE folder {folder} has no weights ({' or '.join(WEIGHT_FILES)})")
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    return {
        "path": os.path.abspath(folder),
        "class": config.get("_class_name", "AutoencoderKL"),
        "config_sha256": sha256_file(os.path.join(folder, "config.json")),
        "weights_sha256": sha256_file(os.path.join(folder, weights[0])),
    }


def dtype_kwargs(dtype: torch.dtype) -> dict:
    """``from_pretrained``'s dtype keyword: ``dtype`` in new diffusers, ``torch_dtype`` before."""
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def load_vae(path: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """``AutoencoderKL`` from a local folder, offline, in eval mode."""
    from diffusers import AutoencoderKL

    import pickle

    from ltbench.utils.weights import check_model_folder

    folder = vae_folder(path)
    check_model_folder(folder)  # a crafted .bin is refused by name before diffusers reads it
    try:
        vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, **dtype_kwargs(dtype))
    except (OSError, ValueError, EnvironmentError, pickle.UnpicklingError, EOFError) as exc:
        raise RuntimeError(f"cannot load the VAE in {folder}: {' '.join(str(exc).split())[:500]}") from exc
    return vae.to(device).eval().requires_grad_(False)


def resolve_device(device: str) -> torch.device:
    """``auto|cpu|cuda|cuda:N`` -> a torch.device: ``ltbench.utils.device.resolve_device``, the
    one parser every stage shares (kept here under its old name for the prior's callers)."""
    from ltbench.utils.device import resolve_device as resolve

    return resolve(device)
