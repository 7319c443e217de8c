"""``ltbench augment``: tail-class samples from a latent store with any registered augmenter,
decoded by the prior and written in the dataset layout (``images/``, ``labels.csv``,
``latents.npy``).

``fsa-il`` needs an iterated-learning fit (``ltbench train-il``): its CAMs (``FusionConfig.cam``
and ``cam_layers``) are computed under ``OUT.work`` (rank 0 under torchrun, the others read
them), then every tail class gets ``n_per_class`` fusions, optionally refined @k. The other
augmenters run their ``fit_generate`` on the split's latents (t2i shards its samples over a
torchrun group; the others are cheap and run whole). Only rank 0 writes."""

import dataclasses
import inspect
import json
import os
import shutil

import torch

from ltbench.method.fusion import FusionConfig


def _fsa_il(store, il: str, cfg: FusionConfig, classes, head, tail, prior, work: str, device: str, progress: bool):
    from ltbench.augment.fsa_il import generate_fusions
    from ltbench.method.cam import compute_cams
    from ltbench.method.il import load_il
    from ltbench.utils.dist import barrier, is_main

    model = load_il(il, device=device)
    from ltbench.utils.io import claim_partial

    cams_dir = os.path.join(work, "cams")
    if is_main():
        claim_partial(work, "augment-scratch")  # refuses a folder of that name ltbench did not write
        cams, scores = compute_cams(model, store, cams_dir, method=cfg.cam, layers=cfg.cam_layers, progress=progress, device=device)
    barrier()  # under torchrun: rank 0 computes the CAMs, the others read them
    if not is_main():
        cams, scores = compute_cams(model, store, cams_dir, method=cfg.cam, layers=cfg.cam_layers, progress=False, device=device)

    class Record:
        pass

    rec = Record()
    z, y = generate_fusions(model, store, cams, scores, classes, head, tail, cfg, prior=prior, record=rec, progress=progress, device=device)
    rows, p = store.rows, rec.partners_
    extra = {"tail_row": rows[p[:, 0]], "partner_row": rows[p[:, 1]], "tail_class": [classes[c] for c in p[:, 3]], "partner_head_class": [classes[c] for c in p[:, 2]]}
    return z, y, extra


def _registered(method: str, store, cfg: FusionConfig, classes, head, tail, prior):
    from ltbench.augment import augmenter_class

    if len(store) == 0:
        raise ValueError(f"the split of {store.root} has no rows")
    X = torch.stack([store[i][0] for i in range(len(store))])
    y = store.labels[store.rows].astype("uint8")
    params = {"classes": classes, "head": head, "tail": tail, "n_per_class": cfg.n_per_class, "seed": cfg.seed}
    cls = augmenter_class(method)
    accepted = inspect.signature(cls.__init__).parameters
    if "prior" in accepted or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        params["prior"] = prior  # t2i samples with it; others ignore it
    z, y_new = cls(**params).fit_generate(X, y)
    return z, y_new, None


def run_augment(method: str, latents: str, out: str, cfg: FusionConfig = FusionConfig(), il: str | None = None, prior: str = "phantom", split: str = "train", head=None, tail=None, device: str = "auto", overwrite: bool = False, progress: bool = True) -> dict | None:
    """Generate and write the samples; returns {"n", "unet_evals_per_sample", "out"} on rank 0
    (None on the other ranks, and n = 0 with nothing written when the method makes none)."""
    from ltbench.augment import check_head_tail
    from ltbench.data.presets import DATASETS
    from ltbench.data.store import LatentStore
    from ltbench.data.writer import check_image_folder_out, write_decoded
    from ltbench.prior.pipeline import load_prior
    from ltbench.prior.vae import vae_identity
    from ltbench.utils.dist import is_main

    if method != "fsa-il" and cfg.refine_steps:
        raise ValueError(f"--steps (refinement) applies to fsa-il only, not --method {method}")
    if method == "fsa-il" and not il:
        raise ValueError("--method fsa-il needs --il (an iterated-learning run folder from `ltbench train-il`)")
    if is_main():
        check_image_folder_out(out, overwrite)  # refused before any work, not after it
    store = LatentStore(latents, split=split)
    classes = list(store.classes)
    head, tail = list(head or DATASETS["phantom"].head), list(tail or DATASETS["phantom"].tail)
    check_head_tail(classes, head, tail)
    pipe = load_prior(prior, device=device)
    if vae_identity(pipe.path)["weights_sha256"] != store.manifest["identity"]["vae"]["weights_sha256"]:
        raise ValueError(f"the latents in {latents} were encoded with another VAE than the prior {pipe.path}'s; decode with the prior that encoded them")
    if is_main():
        print(json.dumps({"augment": dataclasses.asdict(cfg), "method": method, "head": head, "tail": tail, "rows": len(store)}, indent=2))
    work = out.rstrip("/") + ".work"  # the CAMs: ltbench's own scratch folder (marked), removed when done
    with pipe.count_unet() as cnt:
        if method == "fsa-il":
            z, y, extra = _fsa_il(store, il, cfg, classes, head, tail, pipe, work, device, progress)
        else:
            z, y, extra = _registered(method, store, cfg, classes, head, tail, pipe)
    if not is_main():
        return None
    from ltbench.utils.io import output_kind

    if output_kind(work) == "augment-scratch":
        shutil.rmtree(work)
    if len(z):
        write_decoded(out, pipe, z, y, classes, extra=extra, overwrite=overwrite)
    return {"n": len(z), "unet_evals_per_sample": cnt.rows / max(len(z), 1), "out": out}


__all__ = ["run_augment"]
