"""Encode a dataset into a latent store (``ltbench encode``).

``z = vae.encode(x).latent_dist.sample() * scaling_factor`` (or ``.mode()`` with
``latent="mean"``), with ``x`` resized to the VAE's input size, centre-cropped, in [-1, 1].
Memory is bounded by the batch: images stream from disk through a DataLoader and latents go
straight into a memory-mapped shard. Shards are independent units of work: under torchrun
rank r encodes shards r, r + world, ...; a killed run resumes at the first missing shard and,
because each shard's sampling noise is seeded by (seed, shard), produces the same bytes as an
uninterrupted run.
"""

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Subset

from ltbench.data.csv_dataset import CsvImageDataset, collate_skip_none
from ltbench.data.store import FORMAT, LABELS, MANIFEST, STORE_KIND, VERSION, ShardWriter, StoreError, identity_mismatch, read_checksum, read_manifest, shard_checksum_problem, shard_done, write_manifest
from ltbench.prior.vae import load_vae, resolve_device, vae_identity
from ltbench.utils.dist import barrier, rank_world
from ltbench.utils.io import atomic_write_text, check_replaceable, claim_partial, clean_stale_tmp, mark_output, sha256_file, swap_into_place

from ltbench.config import Config, opt

log = logging.getLogger("ltbench.encode")


@dataclass(frozen=True)
class EncodeConfig(Config):
    batch_size: int = opt(16, "images per VAE call; memory scales with this, not with the dataset", ge=1, le=1 << 16)
    shard_size: int = opt(1024, "latents per shard file: the unit of resume and of work per rank", ge=1, le=1 << 24)
    latent: str = opt("sample", "\"sample\" the posterior (Stable Diffusion training) or take its \"mean\"")
    dtype: str = opt("float16", "on-disk dtype; latents are ~unit scale, fp16 halves disk at ~1e-3 rel. error")
    seed: int = opt(0, "seeds the posterior sample of each shard", ge=0)
    num_workers: int = opt(0, "DataLoader workers for image decoding", ge=0, le=256)
    device: str = opt("auto", "\"auto\" = cuda if available, else cpu")

    def __post_init__(self):
        if self.latent not in ("sample", "mean"):
            raise ValueError(f"latent must be 'sample' or 'mean', got {self.latent!r}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be 'float16' or 'float32', got {self.dtype!r}")


def encode_dataset(dataset: CsvImageDataset, csv: str, prior: str, out: str, cfg: EncodeConfig = EncodeConfig(), overwrite: bool = False, progress: bool = True) -> str:
    """Encode ``dataset`` (read from ``csv``) with the VAE of ``prior`` into the store ``out``."""
    from tqdm.auto import tqdm

    rank, world = rank_world()
    device = resolve_device(cfg.device)
    vae = load_vae(prior, device)
    scaling = float(getattr(vae.config, "scaling_factor", 1.0))
    img = dataset.image
    if img.channels != vae.config.in_channels:
        raise ValueError(f"dataset gives {img.channels}-channel images, the VAE takes {vae.config.in_channels}")
    with torch.no_grad():
        probe = vae.encode(torch.zeros(1, img.channels, img.size, img.size, device=device)).latent_dist.mean
    latent_shape = list(probe.shape[1:])
    n = len(dataset)
    n_shards = (n + cfg.shard_size - 1) // cfg.shard_size
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "identity": {
            "vae": vae_identity(prior),
            "scaling_factor": scaling,
            "latent": cfg.latent,
            "seed": cfg.seed,
            "dtype": cfg.dtype,
            "shard_size": cfg.shard_size,
            "preprocessing": {"size": img.size, "channels": img.channels, "resize": "shorter side, antialiased bilinear, centre crop", "value_range": [-1.0, 1.0], "uncertain": img.uncertain},
            "dataset": {"csv": os.path.abspath(csv), "csv_sha256": sha256_file(csv), "root": os.path.abspath(dataset.root), "rows": n},
            "classes": list(dataset.classes),
        },
        "n": n,
        "n_shards": n_shards,
        "latent_shape": latent_shape,
        "dtype": cfg.dtype,
        "shard_size": cfg.shard_size,
        "classes": list(dataset.classes),
        "complete": False,
    }
    final = out
    if rank == 0:
        out = _prepare(final, manifest, overwrite)
        clean_stale_tmp(out)  # temporary shard files of a killed run (never a live writer's)
        atomic_write_text(os.path.join(out, LABELS), dataset.frame.to_csv(index=False))
    barrier()
    out = _work_folder(final, manifest)  # every rank: where rank 0 prepared

    mine = []
    for s in range(n_shards):
        if s % world != rank:
            continue
        problem = shard_checksum_problem(out, s)  # every shard found is verified: corrupt ones are re-encoded
        if problem is not None:
            if problem != "missing":
                log.warning("latent store shard %d of %s: %s; re-encoding it", s, out, problem)
            mine.append(s)
    done_before = sum(1 for s in range(n_shards) if s % world == rank) - len(mine)
    skipped_total = 0
    t0 = time.time()
    with tqdm(total=sum(min(cfg.shard_size, n - s * cfg.shard_size) for s in mine), desc=f"encode[{rank}]" if world > 1 else "encode", unit="img", disable=not progress) as bar:
        for s in mine:
            lo, hi = s * cfg.shard_size, min(n, (s + 1) * cfg.shard_size)
            writer = ShardWriter(out, s, hi - lo, latent_shape, cfg.dtype)
            try:
                gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + s)
                loader = DataLoader(Subset(dataset, range(lo, hi)), batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=collate_skip_none)
                got = 0
                for batch in loader:
                    if batch is None:
                        continue
                    x, _, idx = batch
                    with torch.no_grad():
                        dist = vae.encode(x.to(device)).latent_dist
                        z = (dist.sample(generator=gen) if cfg.latent == "sample" else dist.mode()) * scaling
                    if not torch.isfinite(z).all():
                        raise ValueError(f"the VAE of {vae_identity(prior)['path']} produced non-finite latents (NaN or inf weights?) for rows {idx.tolist()[:5]} of {csv}")
                    writer.write(idx.numpy() - lo, z.float().cpu().numpy().astype(cfg.dtype))
                    got += len(idx)
                    bar.update(len(idx))
                bar.update(hi - lo - got)
                skipped_total += hi - lo - got
                writer.close()
            except BaseException:
                writer.abort()
                raise
    if skipped_total:
        log.warning("skipped %d unreadable images (rows left out of the store, see ok-*.npy)", skipped_total)
    log.info("encoded %d shards (%d were already done) in %.1fs", len(mine), done_before, time.time() - t0)
    barrier()
    if rank == 0:
        missing = [s for s in range(n_shards) if not shard_done(out, s, verify=False)]
        if missing:
            raise StoreError(f"encode finished but shards {missing[:5]} are missing (another rank failed?)")
        sums = [read_checksum(out, s) for s in range(n_shards)]
        if any(c is None for c in sums):
            raise StoreError(f"encode finished but the checksums of shards {[s for s, c in enumerate(sums) if c is None][:5]} are missing")
        manifest["shard_sha256"] = sums
        manifest["complete"] = True
        write_manifest(out, manifest)
        if out != final:
            swap_into_place(out, final, legacy=_is_store)  # the old store is deleted only now
    return final


def _is_store(folder: str) -> bool:
    """A latent store written before output markers existed: its manifest names the format."""
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") == FORMAT


def _same_store(folder: str, manifest: dict) -> bool:
    try:
        return not identity_mismatch(read_manifest(folder), manifest)
    except StoreError:
        return False


def _work_folder(out: str, manifest: dict) -> str:
    """Where this encode writes: ``out`` itself when it is absent, empty or holds this same
    encode (resumed in place), else ``out.partial`` (``--overwrite``: the old store stays
    whole until the new one is complete and swapped in)."""
    return out if _same_store(out, manifest) else out.rstrip("/") + ".partial"


def _prepare(out: str, manifest: dict, overwrite: bool) -> str:
    """Refuse what may not be written (another store or a foreign folder without
    ``overwrite``; a folder ltbench did not write even with it), create or resume the folder
    the shards go to, and return it."""
    if os.path.isdir(out) and os.path.exists(os.path.join(out, MANIFEST)):
        try:
            old = read_manifest(out)
        except StoreError:
            if not overwrite:
                raise
            old = None
        if old is not None and not identity_mismatch(old, manifest):
            log.info("resuming latent store %s", out)
            write_manifest(out, {**manifest, "complete": False})
            return out
        if old is not None and not overwrite:
            diff = identity_mismatch(old, manifest)
            raise StoreError(f"latent store {out} was made with different settings ({', '.join(diff)}); pass --overwrite to replace it, or choose another --out")
        check_replaceable(out, overwrite, legacy=_is_store)
    elif os.path.lexists(out) and (not os.path.isdir(out) or os.listdir(out)):
        if os.path.isdir(out) and not overwrite:
            raise StoreError(f"{out} exists, is not empty and is not a latent store; choose another --out or pass --overwrite")
        check_replaceable(out, overwrite, legacy=_is_store)
    else:  # absent or empty: the store is built (and resumed) in place
        mark_output(out, STORE_KIND)
        write_manifest(out, manifest)
        return out
    partial = out.rstrip("/") + ".partial"
    claim_partial(partial, STORE_KIND, legacy=_is_store)
    if _same_store(partial, manifest):
        log.info("resuming the replacement of latent store %s in %s", out, partial)
    else:
        shutil.rmtree(partial)  # ours (marked): an interrupted replacement with other settings
        claim_partial(partial, STORE_KIND)
    write_manifest(partial, {**manifest, "complete": False})
    return partial


__all__ = ["EncodeConfig", "encode_dataset"]


def encode_folder(dataset: str, data: str, prior: str, out: str, cfg: EncodeConfig = EncodeConfig(), split: str | None = None, csv: str | None = None, classes=None, size: int | None = None, on_error: str = "raise", uncertain: str = "zero", overwrite: bool = False, progress: bool = True) -> dict:
    """``ltbench encode``: open registered ``dataset`` from the folder ``data`` (its preset's
    CSV, or ``csv``), with the images prepared for the VAE of ``prior`` (``size`` px, default the
    VAE's ``sample_size``; its input channels), and encode it into the store ``out``. The
    resolved config is printed first; returns it."""
    import dataclasses
    import json

    from ltbench.data.csv_dataset import ImageConfig
    from ltbench.data.presets import DATASETS, open_dataset, split_csv
    from ltbench.prior.vae import vae_folder

    with open(os.path.join(vae_folder(prior), "config.json")) as f:
        vae_cfg = json.load(f)
    image = ImageConfig(size=size if size is not None else int(vae_cfg.get("sample_size") or 512), channels=int(vae_cfg.get("in_channels", 3)), on_error=on_error, uncertain=uncertain)
    ds = open_dataset(dataset, data, split=split, csv=csv, image=image, classes=classes)
    csv = csv or split_csv(DATASETS[dataset], data, split or "train")
    summary = {"encode": dataclasses.asdict(cfg), "image": dataclasses.asdict(image), "dataset": dataset, "rows": len(ds)}
    print(json.dumps(summary, indent=2))
    encode_dataset(ds, csv, prior, out, cfg, overwrite=overwrite, progress=progress)
    return summary
