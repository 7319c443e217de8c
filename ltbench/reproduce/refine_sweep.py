"""``python -m ltbench.reproduce refine-sweep --run DIR``: fsa-il's refinement @k on paired fusions.

The paper's strongest claim is that five refinement steps take fused samples from FID 192 to
130. To see what refinement itself does, every k must act on the SAME fused latents: one set of
fusions (seed 0; the run's IL fit and CAMs, its fusion config: partners, masks, thresholds and
M^R drawn once) is refined with k in ``KS`` steps of the 75-step schedule, in ``tail`` mode (the
last k timesteps on the latent as it is, the authors' code) and ``sdedit`` mode (noised to the
level of the first of those steps first). The fusions are made twice: with the decoder in eval
mode (ltbench) and as the authors' fusion script runs it (``decoder="train-batch2"``: S and D
with BatchNorm in train mode on pairs), the hypothesis being that the latter makes a noisy @0
that @5 cleans up. Each (decoder, mode, k) is decoded by the prior's VAE and measured like a
Table 1 cell: FID, KID, precision and recall per tail class in the oracle's feature space
against the run's FID reference, label fidelity by the oracle, and the mean relative change
of the latents from @0.

The fusions are paired across k (sample i is the same tail example, partner and masks at every
k), so every difference is reported with a paired bootstrap interval
(``ltbench.eval.bootstrap``): @k against @0, the authors' decoder against ours, and the
authors' @0 -> @k change against ours. The same command measures ``VARIANTS``: the paper-vs-code
fusion choices and a higher mask threshold, one at a time against the run's config (the
refinement prompt at @5, the rest at @0).

Writes ``TO/refine-sweep.json`` (command, commit, inputs), ``TO/refine-sweep.md`` and
``TO/refine-sweep.png`` (FID and label fidelity against k, as paired differences from @0
with their intervals).
"""

import dataclasses
import json
import os

import numpy as np
import torch

KS = (0, 1, 5, 15, 30)
MODES = ("tail", "sdedit")
DECODERS = ("eval", "train-batch2")
# the paper-vs-code choices and the mask threshold, each changed alone from the run's fusion
# config on the eval decoder; measured at @0, the prompt (which only refinement reads) at @5
VARIANTS = (
    ("partner_rule", "class-confusion"),
    ("partner_rule", "code"),
    ("partner_candidates", "any"),
    ("tau_h", 0.6),
    ("refine_prompt", "union"),
)
N_BOOT = 1000


def fusions(ctx, decoder: str, seed: int = 0, **overrides):
    """The run's fusions at @0 with ``decoder`` (and ``overrides`` of its fusion config):
    (z float32[M, C, h, w], labels uint8[M, K], targets int[M] (the tail class each was made
    for), prompts list[str])."""
    from torch.utils.data import TensorDataset

    from ltbench.augment.fsa_il import generate_fusions, refine_prompts

    p = ctx.preset
    model, cams, scores = ctx.il_fit()
    z = ctx.latents()
    y = ctx.y_train
    cfg = dataclasses.replace(p.fusion, **{"refine_steps": 0, "seed": seed, "decoder": decoder, **overrides})

    class Record:
        pass

    rec = Record()
    data = TensorDataset(z, torch.from_numpy(y).float(), torch.arange(len(z)))
    z0, labels = generate_fusions(model, data, cams, scores, ctx.classes, ctx.head, ctx.tail, cfg, record=rec)
    tail_pos, head_pos, _, target = rec.partners_.T
    union = (y[tail_pos] > 0) | (y[head_pos] > 0)
    prompts = [refine_prompts(ctx.classes, int(c), u[None].astype(np.uint8), cfg.refine_prompt)[0] for c, u in zip(target, union)]
    return z0, labels, target, prompts


def sdedit_noise(seed: int, targets: np.ndarray, n_per_class: int, shape) -> torch.Tensor:
    """One noise tensor per sample from its own seed, the same for every k (paired)."""
    from ltbench.utils.dist import sample_generator

    return torch.stack([torch.randn(shape, generator=sample_generator(seed + 7919, int(c), i % n_per_class)) for i, c in enumerate(targets)])


def point_id(decoder: str, mode: str, k: int, variant: str | None = None) -> str:
    return f"{decoder}/{mode}/{k}" + (f"/{variant}" if variant else "")


def _variant_k(ks, name: str) -> int:
    """@0 for what fusion reads; for the refinement prompt, @5 (or the largest k swept below it)."""
    if name != "refine_prompt":
        return 0
    below = [k for k in ks if 0 < k <= 5]
    return max(below) if below else 0


def contrasts(points: list) -> dict:
    """The paired comparisons the sweep reports, as {name: [(weight, point id), ...]}: every
    refined point against @0 of its decoder; the authors' decoder against ours at @0; the
    authors' @0 -> @k change minus ours (for every mode and k); each variant against the run's
    config at the same decoder, mode and k."""
    ids = {pt["id"] for pt in points}
    out = {}
    for pt in points:
        d, m, k, v = pt["decoder"], pt["mode"], pt["k"], pt.get("variant")
        if v is None and k > 0:
            out[pt["id"]] = [(1, pt["id"]), (-1, point_id(d, "-", 0))]
        if v is not None:
            out[pt["id"]] = [(1, pt["id"]), (-1, point_id(d, m, k))]
    if point_id("train-batch2", "-", 0) in ids and point_id("eval", "-", 0) in ids:
        out[point_id("train-batch2", "-", 0)] = [(1, point_id("train-batch2", "-", 0)), (-1, point_id("eval", "-", 0))]
        for pt in points:
            if pt["decoder"] == "train-batch2" and pt["k"] > 0 and pt.get("variant") is None and point_id("eval", pt["mode"], pt["k"]) in ids:
                out[f"gap/{pt['mode']}/{pt['k']}"] = [(1, pt["id"]), (-1, point_id("train-batch2", "-", 0)), (-1, point_id("eval", pt["mode"], pt["k"])), (1, point_id("eval", "-", 0))]
    return out


def sweep(ctx, ks=KS, modes=MODES, decoders=DECODERS, variants=VARIANTS, n_boot: int = N_BOOT, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from ltbench.eval.bootstrap import paired_bootstrap
    from ltbench.eval.fid import ORACLE_EXTRACTOR, features, tail_metrics
    from ltbench.eval.fidelity import label_fidelity

    p = ctx.preset
    ctx.load_data()
    ref = ctx.fid_reference()
    real = {c: features(ref[c], ORACLE_EXTRACTOR, ctx.oracle_file) for c in ctx.tail}
    out, feats, calls = [], {}, {}

    def measure(zk, z0, labels, targets, decoder, mode, k, variant=None):
        images = ctx.prior.decode_uint8(zk, ctx.vae_batch)
        by_class = {c: images[targets == ctx.classes.index(c)] for c in ctx.tail}
        m = tail_metrics(ref, by_class, ctx.tail, ORACLE_EXTRACTOR, ctx.oracle_file)
        fid = label_fidelity(ctx.oracle, images, labels, ctx.classes, ctx.tail, targets=targets)
        change = float(((zk - z0).flatten(1).norm(dim=1) / z0.flatten(1).norm(dim=1).clamp_min(1e-12)).mean())
        pid = point_id(decoder, mode, k, variant)
        pos = ctx.oracle.positive(images)
        feats[pid] = {c: features(by_class[c], ORACLE_EXTRACTOR, ctx.oracle_file) for c in ctx.tail}
        calls[pid] = {c: pos[targets == ctx.classes.index(c), ctx.classes.index(c)] for c in ctx.tail}
        out.append({"id": pid, "decoder": decoder, "mode": mode, "k": k, "variant": variant, "unet_evals_per_sample": 2 * k, "latent_change": change, "metrics": m, "label_fidelity": fid})

    def refine(z0, prompts, k, mode, noise):
        return ctx.prior.refine(z0, prompts, k, steps=p.fusion.refine_schedule, guidance=p.fusion.refine_guidance, mode=mode, noise=noise if mode == "sdedit" else None, batch_size=64)

    for decoder in decoders:
        z0, labels, targets, prompts = fusions(ctx, decoder)
        noise = sdedit_noise(0, targets, p.n_per_class, tuple(z0.shape[1:]))
        for mode in modes:
            for k in tqdm(ks, desc=f"refine {decoder} {mode}", disable=not progress):
                if k == 0 and mode != modes[0]:
                    continue  # @0 is the same fusion in every mode
                measure(refine(z0, prompts, k, mode, noise), z0, labels, targets, decoder, "-" if k == 0 else mode, k)
    if "eval" in decoders:
        for name, value in tqdm(variants, desc="variants", disable=not progress):
            if getattr(p.fusion, name) == value:
                continue  # the run's own choice: that is the point it is compared with
            k = _variant_k(ks, name)
            if name == "refine_prompt" and k == 0:
                continue
            z0, labels, targets, prompts = fusions(ctx, "eval", **{name: value})
            mode = "-" if k == 0 else modes[0]
            zk = refine(z0, prompts, k, mode, sdedit_noise(0, targets, p.n_per_class, tuple(z0.shape[1:])) if mode == "sdedit" else None) if k else z0
            measure(zk, z0, labels, targets, "eval", mode, k, f"{name}={value}")
    con = contrasts(out)
    boot = paired_bootstrap(real, feats, calls, con, n_boot=n_boot, seed=0, progress=progress)
    for pt in out:
        pt["paired"] = boot["contrasts"].get(pt["id"])
    gaps = {name: v for name, v in boot["contrasts"].items() if name.startswith("gap/")}
    return {"ks": list(ks), "modes": list(modes), "decoders": list(decoders), "n_per_class": p.n_per_class, "fusion": dataclasses.asdict(p.fusion), "points": out, "authors_gap": gaps,
            "intervals": {"method": "paired bootstrap over fusions and reference images (ltbench.eval.bootstrap)", "n_boot": boot["n_boot"], "level": boot["level"], "seed": boot["seed"]}}


def run_refine_sweep(run: str, to: str, ks=KS, progress: bool = True, command: str = "ltbench.reproduce.refine_sweep.run_refine_sweep", n_boot: int = N_BOOT) -> dict:
    from ltbench.reproduce.diagnostics_report import refine_sweep_figure, render_refine_sweep_md
    from ltbench.reproduce.stages import Context
    from ltbench.utils.io import atomic_write_json, atomic_write_text
    from ltbench.utils.provenance import git_sha

    ctx = Context.from_run(run, progress)
    name = ctx.preset.name
    if ctx.oracle is None:
        raise ValueError(f"{run} has no oracle: the sweep measures label fidelity and the oracle's FID (a phantom run)")
    if max(ks) > ctx.preset.fusion.refine_schedule:
        raise ValueError(f"k up to {max(ks)} exceeds the {ctx.preset.fusion.refine_schedule}-step schedule")
    if n_boot < 100:
        raise ValueError(f"{n_boot} bootstrap replicates: a 95% percentile interval needs at least 100")
    res = sweep(ctx, ks=ks, n_boot=n_boot, progress=progress)
    res = {"run": run, "preset": name, **res, "measured": {"command": command, "git_sha": git_sha(), "inputs": ctx.inputs}}
    os.makedirs(to, exist_ok=True)
    atomic_write_json(os.path.join(to, "refine-sweep.json"), json.loads(json.dumps(res)))
    atomic_write_text(os.path.join(to, "refine-sweep.md"), render_refine_sweep_md(res))
    refine_sweep_figure(res, os.path.join(to, "refine-sweep.png"))
    return res
