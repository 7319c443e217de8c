"""``python -m ltbench.reproduce project --run DIR``: project the ``paper`` preset's wall time on
one H100 and on eight from a ``paper-rehearsal`` run.

What is measured comes from the run folder: the work each stage did (images read and encoded,
UNet evaluations and decodes per row, classifier images, test images scored), its wall time
and peak RSS on this machine, and the UNet evaluations each row spends per sample (counted by
the prior). What is assumed is stated in ``ASSUMED_H100`` (throughputs of one H100 on each
kind of work, with the reasoning) and ``PAPER_SPLITS`` (split sizes the preset does not fix):
the projection is the paper preset's work in each unit divided by the assumed throughput,
summed per stage. On eight GPUs the shared stages (data, encoding, the IL fit: each computed
once, by the first process, under a lock) run once, and the (row, seed) cells are spread over
the eight processes (torchrun claiming cells), so the cells' part is the makespan of a greedy
longest-first assignment. Change an assumption with ``--assume KEY=VALUE``.

Writes ``DIR/projection.json`` and ``DIR/projection.md``.
"""

import dataclasses
import os

ASSUMED_H100 = {
    "read_images_per_s": (400.0, "MIMIC-CXR-JPG files (about 2500x3000 px JPEG) decoded and resized to 512 px by 16 DataLoader workers (~25 ms per image per core)"),
    "vae_encode_images_per_s": (80.0, "SD 1.x VAE encoder at 512 px, bf16, batch 16"),
    "vae_decode_images_per_s": (40.0, "SD 1.x VAE decoder at 512 px, bf16 (the decoder costs about twice the encoder)"),
    "unet_evals_per_s": (100.0, "SD 1.x UNet (860M) at 4x64x64, bf16, batch >= 16; classifier-free guidance counts two evaluations"),
    "densenet_train_images_per_s": (2000.0, "DenseNet121 at 224 px, forward + backward, AMP, channels-last"),
    "densenet_score_images_per_s": (6000.0, "DenseNet121 at 224 px, inference, AMP"),
    "il_latent_epochs_per_s": (1500.0, "the authors' IL networks (U-Nets ngf 64, depth 6, VGG11) on 4x64x64 latents: one latent through one interaction or imitation epoch, forward + backward"),
    "fid_images_per_s": (2000.0, "feature extraction for FID/KID/PRC (Inception at 299 px, XRV DenseNet121 at 224 px)"),
}
PAPER_SPLITS = {
    "val_images": (2000, "the paper preset reads the whole val CSV for the `real` row's held-out images; only n_per_class per tail class are used, so assume a small read"),
    "test_images": (40000, "MIMIC-CXR-LT's test CSV (set --assume test_images=N to your split's count)"),
    "fid_feature_spaces": (2, "Inception and XRV when their weight files are given (no oracle on real data)"),
}


def measured(run: str) -> dict:
    """The rehearsal's own work and time per stage, from run.json and the cells."""
    from ltbench.reproduce.schema import load_cells, read_run_info

    info = read_run_info(run)
    if info.get("preset") != "paper-rehearsal":
        raise ValueError(f"{run} is a run of preset {info.get('preset')!r}: the projection scales a paper-rehearsal run (python -m ltbench.reproduce table1 --preset paper-rehearsal --out DIR)")
    cfg = info["config"]
    cells = load_cells(run)
    inv = info["invocations"]
    timings: dict = {}
    peaks: dict = {}
    for i in inv:  # summed over invocations (a resumed or sharded run)
        for k, v in i.get("stage_timings", {}).items():
            timings[k] = round(timings.get(k, 0.0) + v, 2)
        for k, v in i.get("stage_peak_rss_mb", {}).items():
            peaks[k] = max(peaks.get(k, 0.0), v)
    sizes = info.get("split_sizes", {})
    cls = cfg["classifier"]
    rows = {}
    for c in cells:
        r, cost = c["config"]["row"], c["results"]["cost"]
        rows.setdefault(r, {"n_generated": cost["n_generated"], "unet_evals_per_sample": cost.get("unet_evals_per_sample"), "space": cost.get("space"), "generate_seconds": [], "classifier_seconds": []})
        rows[r]["generate_seconds"].append(cost["generate_seconds"])
        rows[r]["classifier_seconds"].append(c["results"].get("classifier_seconds"))
    return {
        "preset": info["preset"],
        "split_sizes": sizes,
        "stage_seconds": timings,
        "stage_peak_rss_mb": peaks,
        "peak_rss_mb": max(peaks.values()) if peaks else None,
        "wall_seconds": round(sum(i["seconds"] for i in inv), 1),
        "invocations": [{"seconds": i["seconds"], "rank": i.get("rank"), "world": i.get("world"), "cells_run": len(i.get("cells_run", []))} for i in inv],
        "rows": rows,
        "n_per_class": cfg["n_per_class"],
        "t2i_steps": cfg["t2i_steps"],
        "classifier": {k: cls[k] for k in ("steps", "warm_steps", "batch_size", "input_size")},
        "il_generations": cfg["il"]["generations"],
        "git_sha": inv[-1]["metadata"].get("git_sha") if inv else None,
    }


def _unit_seconds(assume: dict) -> dict:
    a = {k: v[0] for k, v in ASSUMED_H100.items()}
    a.update({k: v for k, v in assume.items() if k in a})
    return a


def project(run: str | None = None, assume: dict | None = None, gpus=(1, 8), m: dict | None = None) -> dict:
    """The paper preset's work per stage and its projected wall time on ``gpus`` H100s, from
    the rehearsal in ``run`` (or its ``measured`` dict ``m``)."""
    from ltbench.reproduce.presets import PRESETS

    assume = dict(assume or {})
    m = measured(run) if m is None else m
    paper = PRESETS["paper"]
    missing = [r for r in paper.rows if r not in m["rows"]]
    if missing:
        raise ValueError(f"the rehearsal has no cell of row(s) {missing}: their cost per sample is measured there; run every row of the paper preset")
    thr = _unit_seconds(assume)
    splits = {k: assume.get(k, v[0]) for k, v in PAPER_SPLITS.items()}
    tail = 5
    n_gen = paper.n_per_class * tail
    il = paper.il
    shared = {
        "data": {"work": {"images_read": paper.train_sample + splits["val_images"] + splits["test_images"]}, "seconds": (paper.train_sample + splits["val_images"] + splits["test_images"]) / thr["read_images_per_s"]},
        "encode": {"work": {"images_encoded": paper.train_sample}, "seconds": paper.train_sample / thr["vae_encode_images_per_s"]},
        "il_fit": {"work": {"latent_epochs": paper.train_sample * il.generations * (il.interaction_epochs + il.imitation_epochs)}, "seconds": paper.train_sample * il.generations * (il.interaction_epochs + il.imitation_epochs) / thr["il_latent_epochs_per_s"]},
    }
    if paper.classifier.warm_steps:
        imgs = paper.classifier.warm_steps * paper.classifier.batch_size * paper.seeds
        shared["classifier_warm"] = {"work": {"train_images": imgs}, "seconds": imgs / thr["densenet_train_images_per_s"]}
    cells = []
    for row in paper.rows:
        got = m["rows"].get(row, {})
        per = got.get("unet_evals_per_sample") or 0.0
        if row == "t2i" and m["t2i_steps"]:
            # 2 evaluations per step (guidance) over the steps plus the scheduler's extra ones
            # (PNDM's first step evaluates twice): the same extra at the paper's 75 steps
            extra = max(0.0, per / 2 - m["t2i_steps"])
            per = 2 * (paper.t2i_steps + extra)
        n = 0 if row == "none" else n_gen
        unet = n * per
        decodes = n if got.get("space") == "latent" or row == "vae" else 0
        encodes = n if row == "vae" else 0
        fid = (n + paper.fid_real_per_class * tail) * splits["fid_feature_spaces"] if n else 0
        train = paper.classifier.steps * paper.classifier.batch_size
        gen_s = unet / thr["unet_evals_per_s"] + decodes / thr["vae_decode_images_per_s"] + encodes / thr["vae_encode_images_per_s"]
        cls_s = train / thr["densenet_train_images_per_s"] + splits["test_images"] / thr["densenet_score_images_per_s"]
        for seed in range(paper.seeds):
            cells.append({"row": row, "seed": seed, "work": {"unet_evals": unet, "decodes": decodes, "encodes": encodes, "fid_images": fid, "classifier_train_images": train, "test_images_scored": splits["test_images"]}, "generate_s": gen_s, "metrics_s": fid / thr["fid_images_per_s"], "classifier_s": cls_s})
    for c in cells:
        c["seconds"] = c["generate_s"] + c["metrics_s"] + c["classifier_s"]
    shared_s = sum(v["seconds"] for v in shared.values())
    out = {"measured": m, "assumptions": {"h100_throughput": {k: {"value": thr[k], "why": ASSUMED_H100[k][1]} for k in ASSUMED_H100}, "paper_splits": {k: {"value": splits[k], "why": PAPER_SPLITS[k][1]} for k in PAPER_SPLITS}}, "paper_preset": {"rows": list(paper.rows), "seeds": paper.seeds, "train_sample": paper.train_sample, "n_per_class": paper.n_per_class, "t2i_steps": paper.t2i_steps, "classifier": dataclasses.asdict(paper.classifier), "il": dataclasses.asdict(il)}, "shared_stages": shared, "cells": cells, "projection": {}}
    for g in gpus:
        loads = [0.0] * g
        for c in sorted(cells, key=lambda c: -c["seconds"]):  # longest first onto the least-loaded GPU
            loads[loads.index(min(loads))] += c["seconds"]
        out["projection"][f"{g}xH100"] = {"shared_hours": round(shared_s / 3600, 2), "cells_hours": round(max(loads) / 3600, 2), "total_hours": round((shared_s + max(loads)) / 3600, 2)}
    by_stage = {k: v["seconds"] for k, v in shared.items()}
    for stage in ("generate_s", "metrics_s", "classifier_s"):
        by_stage[stage[:-2]] = sum(c[stage] for c in cells)
    out["paper_stage_hours_1gpu"] = {k: round(v / 3600, 2) for k, v in by_stage.items()}
    return out


def render_md(p: dict) -> str:
    m = p["measured"]
    lines = [
        "# Projection of the `paper` preset from the `paper-rehearsal` run",
        "",
        f"Rehearsal: commit {m['git_sha']}, {m['wall_seconds'] / 60:.1f} min of wall time over {len(m['invocations'])} invocation(s), peak RSS {m['peak_rss_mb']:.0f} MiB; splits {m['split_sizes']}.",
        "",
        "## Measured on this machine (rehearsal)",
        "",
        "| stage | seconds | peak RSS (MiB) |",
        "|---|---|---|",
    ]
    for k in sorted(set(s.removesuffix("_s") for s in m["stage_seconds"]) | set(m["stage_peak_rss_mb"])):
        sec = m["stage_seconds"].get(k + "_s")
        lines.append(f"| {k} | {'' if sec is None else f'{sec:.0f}'} | {m['stage_peak_rss_mb'].get(k, '')} |")
    lines += ["", "| row | samples | UNet evaluations per sample | generation s | classifier s |", "|---|---|---|---|---|"]
    for r, v in m["rows"].items():
        lines.append(f"| {r} | {v['n_generated']} | {v['unet_evals_per_sample']} | {sum(v['generate_seconds']):.0f} | {sum(x or 0 for x in v['classifier_seconds']):.0f} |")
    lines += ["", "## Projected (paper preset: work in each unit / ASSUMED H100 throughput)", "",
              "Every GPU throughput below is an assumption, not a measurement: no GPU has run ltbench when this was written (`benchmarks/gpu_check.sh` measures the ops on the first one; pass measured throughputs with `--assume KEY=VALUE`). The work counts are measured.", "",
              "| | shared stages (h) | cells (h) | total (h) |", "|---|---|---|---|"]
    for g, v in p["projection"].items():
        lines.append(f"| {g} | {v['shared_hours']} | {v['cells_hours']} | {v['total_hours']} |")
    lines += ["", "One H100, per stage (h): " + ", ".join(f"{k} {v}" for k, v in p["paper_stage_hours_1gpu"].items()) + ".", "", "### Assumptions (none of them measured on a GPU)", ""]
    for k, v in {**p["assumptions"]["h100_throughput"], **p["assumptions"]["paper_splits"]}.items():
        lines.append(f"- `{k}` = {v['value']:g} (assumed): {v['why']}")
    lines += ["", "Eight GPUs: the shared stages run once (the first process under a lock; the others wait), the 24 cells are spread over the processes (longest first). The classifier's 20,000 steps dominate a cell; encoding and the IL fit are the serial part.", ""]
    return "\n".join(lines)


def main(run: str, assume: dict | None = None) -> dict:
    from ltbench.utils.io import atomic_write_json, atomic_write_text

    p = project(run, assume)
    atomic_write_json(os.path.join(run, "projection.json"), p)
    atomic_write_text(os.path.join(run, "projection.md"), render_md(p))
    return p


__all__ = ["ASSUMED_H100", "PAPER_SPLITS", "main", "measured", "project", "render_md"]
