"""Table 1 rendered from the cell JSONs only (never edited by hand): ``table1.md``,
``table1-compact.md``, ``table1.csv``, ``table1.json`` and ``figures/table1.png`` (the table as
points with 95% intervals). Cells are read through ``ltbench.reproduce.schema``."""

import csv
import io
import json
import os

import numpy as np

from ltbench.data.classes import TAIL_CLASSES as PAPER_TAIL
from ltbench.eval.fid import NA_INCEPTION
from ltbench.eval.stats import mean_interval, paired_interval
from ltbench.reproduce import readings
from ltbench.reproduce.figures import pyplot, save_figure
from ltbench.reproduce.rows import PAPER_TABLE1
from ltbench.reproduce.schema import load_cells
from ltbench.utils.io import atomic_write_text

# (key, column title, how to read it from a cell's results, decimals)
METRICS = (
    ("fid_oracle", "Avg Tail FID (oracle) ↓", lambda r: _space(r, "oracle", "fid"), 2),
    ("kid_oracle", "Avg Tail KID x1000 (oracle) ↓", lambda r: _scaled(_space(r, "oracle", "kid"), 1000), 2),
    ("precision_oracle", "Precision (oracle) ↑", lambda r: _space(r, "oracle", "precision"), 3),
    ("recall_oracle", "Recall (oracle) ↑", lambda r: _space(r, "oracle", "recall"), 3),
    ("fid_xrv", "Avg Tail FID (XRV) ↓", lambda r: _space(r, "xrv", "fid"), 2),
    ("fid_inception", "Avg Tail FID (Inception) ↓", lambda r: _space(r, "inception", "fid"), 2),
    ("head_map", "Head mAP ↑", lambda r: r.get("head_map"), 3),
    ("tail_map", "Tail mAP ↑", lambda r: r.get("tail_map"), 3),
    ("label_fidelity", "Label fidelity (tail) ↑", lambda r: (r.get("label_fidelity") or {}).get("mean_tail"), 3),
    ("ms_on_finding_lift", "M^S on the finding − random mask ↑", lambda r: _lift(r, "ms_on_finding"), 3),
    ("finding_in_ms_lift", "Finding inside M^S − random mask ↑", lambda r: _lift(r, "finding_in_ms"), 3),
    ("near_copies", "Near copies of train (oracle features) ↓", lambda r: _near(r), 3),
    ("memorised", "Memorisation flag (share of seeds)", lambda r: _flag(r), 2),
    ("generated_share", "Generated share of the row's steps", lambda r: (r.get("generated_share") or {}).get("of_row_steps"), 3),
    ("unet_evals", "UNet evals / sample", lambda r: r["cost"].get("unet_evals_per_sample"), 1),
    ("samples_per_s", "Samples / s", lambda r: r["cost"].get("samples_per_s"), 1),
    ("fit_s", "One-off fit (s)", lambda r: r["cost"].get("fit_seconds"), 0),
    ("to_n_s", "Time to n per class (s)", lambda r: r["cost"].get("seconds_to_n_per_class"), 0),
)
# paired differences from the `none` row (same init and real-data order within a seed)
PAIRED = (("d_head_map", "Δ Head mAP vs none (paired)", "head_map"), ("d_tail_map", "Δ Tail mAP vs none (paired)", "tail_map"))
BASELINE_ROW = "none"
FIDELITY_KEEP = 0.8  # a class's label fidelity is void where the `vae` row keeps < 0.8 x the `real` row's


def _lift(r, key):
    """fsa-il cells on the phantom: the mean over tail classes of how much more M^S localises
    the finding than a random mask of its area (None elsewhere)."""
    loc = r.get("localisation")
    vals = [v[f"{key}_minus_random"]["mean"] for v in (loc or {}).values() if v[f"{key}_minus_random"]["mean"] is not None and np.isfinite(v[f"{key}_minus_random"]["mean"])]
    return float(np.mean(vals)) if vals else None


def _near(r):
    """The share of a row's samples closer to train than the 5th percentile of held-out real
    images (oracle features where there is an oracle, else pixels); ~0.05 for new images."""
    m = (r.get("memorisation") or {}).get("overall")
    if not m:
        return None
    return (m.get("feature") or m.get("pixel") or {}).get("near_copy_share")


def _flag(r):
    """1 where the seed's memorisation test flags the row (its samples sit closer to train than
    held-out real images do, after Holm over classes and spaces), 0 where not."""
    m = (r.get("memorisation") or {}).get("overall")
    return None if not m or m.get("flag") is None else float(m["flag"])


def _space(r, space, metric):
    m = r.get("tail_metrics")
    if not m or space not in m:
        return None
    v = m[space]
    return v if isinstance(v, str) else v["mean"].get(metric)


def _scaled(v, k):
    return v * k if isinstance(v, (int, float)) else v


def aggregate(cells: list[dict], rows, seeds: int | None = None) -> dict:
    """row -> metric -> {"mean", "lo", "hi", "n"} (or the string "n/a ..."), over its seeds."""
    by_row: dict = {}
    for c in cells:
        cfg = c["config"]
        if seeds is not None and cfg["seed"] >= seeds:
            continue
        by_row.setdefault(cfg["row"], []).append(c["results"])
    by_seed: dict = {}
    for c in cells:
        if seeds is None or c["config"]["seed"] < seeds:
            by_seed.setdefault(c["config"]["row"], {})[c["config"]["seed"]] = c["results"]
    table = {}
    for row in [r for r in rows if r in by_row] + sorted(set(by_row) - set(rows)):
        res = by_row[row]
        entry = {"n_seeds": len(res)}
        for key, _, get, _ in METRICS:
            vals = [get(r) for r in res]
            if any(isinstance(v, str) for v in vals):
                entry[key] = next(v for v in vals if isinstance(v, str))
            else:
                entry[key] = mean_interval([v for v in vals if v is not None])
        for key, _, metric in PAIRED:
            base = by_seed.get(BASELINE_ROW)
            if base is None or row == BASELINE_ROW:
                entry[key] = None
            else:
                entry[key] = paired_interval({s: r.get(metric) for s, r in by_seed[row].items()}, {s: r.get(metric) for s, r in base.items()})
        table[row] = entry
    return table


def fidelity_validity(cells: list[dict], tail) -> dict:
    """Per tail class: the `real` row's label fidelity (the oracle's sensitivity on held-out
    real images), the `vae` row's (on their round trips), and whether the judge can be read on
    latent rows for that class (vae >= 0.8 x real). Means over seeds; {} without both rows."""
    acc: dict = {"real": {}, "vae": {}}
    for c in cells:
        row = c["config"]["row"]
        lf = c["results"].get("label_fidelity")
        if row in acc and lf:
            for cls, v in lf["per_class"].items():
                if v.get("tail") is not None:
                    acc[row].setdefault(cls, []).append(v["tail"])
    if not acc["real"] or not acc["vae"]:
        return {}
    out = {}
    for cls in tail:
        r, v = acc["real"].get(cls), acc["vae"].get(cls)
        if r and v:
            r, v = float(np.mean(r)), float(np.mean(v))
            out[cls] = {"real": r, "vae": v, "valid": v >= FIDELITY_KEEP * r}
    return out


def fmt(v, decimals: int) -> str:
    """An interval as "mean [lo, hi]", with "†" when it is a difference that survives its
    family's correction (``ltbench.reproduce.readings``)."""
    if isinstance(v, str):
        return v
    if v is None or v["mean"] is None:
        return "–"
    s = f"{v['mean']:.{decimals}f}"
    if v["lo"] is not None:
        s += f" [{v['lo']:.{decimals}f}, {v['hi']:.{decimals}f}]"
    return s + ("†" if v.get("survives") else "")


def render(out: str, rows, seeds: int | None = None, run_info: dict | None = None) -> dict:
    """Render every Table 1 file of run folder ``out`` from its cells; returns the aggregate."""
    cells = load_cells(out)
    table = aggregate(cells, rows, seeds)
    tail = list(((cells[0]["config"].get("class_split") or {}).get("tail")) or PAPER_TAIL) if cells else list(PAPER_TAIL)
    validity = fidelity_validity(cells, tail)
    run_info = run_info or {}
    runs = readings.by_seed(cells, seeds)
    comp = readings.comparisons(runs)
    survive = readings.survivors(comp)
    for row, e in table.items():
        for key, _, metric in PAIRED:
            if e.get(key) is not None:
                e[key]["survives"] = (row, BASELINE_ROW, metric) in survive
    per_class = readings.per_class(runs, tail)
    ceiling = (run_info.get("oracle") or {}).get("test_average_precision")
    room = readings.room_to_help(runs, tail, run_info.get("test_prevalence"), ceiling)
    preset = run_info.get("preset", "?")
    paper = preset == "paper"
    head = ["Row", "Seeds"] + [m[1] for m in METRICS] + [p[1] for p in PAIRED]
    if paper:
        head += ["Paper: Avg Tail FID (Inception)", "Paper: Head mAP", "Paper: Tail mAP"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, e in table.items():
        cols = [f"`{row}`", str(e["n_seeds"])] + [fmt(e[k], d) for k, _, _, d in METRICS] + [fmt(e[k], 3) for k, _, _ in PAIRED]
        if paper:
            p = PAPER_TABLE1.get(row)
            cols += ["–" if p is None or p[1] is None else f"{p[1]:.3f}", "–" if p is None else f"{p[2]:.3f}", "–" if p is None else f"{p[3]:.3f}"]
        lines.append("| " + " | ".join(cols) + " |")
    meta = cells[0]["metadata"] if cells else {}
    notes = [
        f"# Table 1 — preset `{preset}`",
        "",
        "Generated by `python -m ltbench.reproduce table1` from the JSON files in `cells/` (do not edit by hand).",
        f"Values are the mean over seeds with a 95% Student-t interval in brackets (one seed: the value alone). Device: {meta.get('device', '?')}; ops backend: {meta.get('ops_backend', '?')}; git {meta.get('git_sha', '?')}.",
        "",
        *lines,
        "",
        "- Floor and ceiling: `real` is held-out real images of each tail class, as many as every generator makes (its FID is what the sample size alone costs); `vae` is their autoencoder round trip, the best any latent-space row can reach. Read every generated row between them.",
        "- FID, KID and precision/recall are per tail class (the samples generated FOR the class, the same count in every row, vs real images of the class), averaged over the tail classes, all from one torch-fidelity call per class; KID's subset size is the class's count. "
        "'Oracle' is the domain feature space (the phantom oracle's penultimate layer); "
        f"XRV (torchxrayvision DenseNet121 features, RoentGen's choice) and Inception are reported only when their weights files are on disk ('{NA_INCEPTION}' otherwise).",
        "- Head/Tail mAP: DenseNet121 trained on train + generated images, one recipe and step budget for every row (from the seed's shared warm start where the preset has one, `classifier.warm_steps` > 0, else from scratch); sklearn average precision on the test split. "
        "Within a seed every row starts from the same weights and sees the real images in the same order; Δ is the paired difference from `none` with its 95% paired t-interval; † marks a difference that survives Holm's correction over its family (below). "
        "'Generated share of the row's steps' is the share of the batch slots of the row's own steps that are generated images.",
        "- Memorisation: each generated image's distance to its nearest real train image (oracle features and pixels) beside those of new real images of the class (a draw of their own, in no split and no `real` row; through the autoencoder for `vae` and the latent-space generators, as they are for the pixel rows) (`ltbench.eval.memorisation`); 'near copies' is the share closer to train than the 5th percentile of the new images' distances (~0.05 for samples as new as real images; `real` and `vae` are the floor), the flag (share of seeds) is a one-sided Mann-Whitney test per class and space with Holm's correction.",
        "- Label fidelity: fraction of the samples made for tail class c that the oracle calls positive for c (per-class threshold at a fixed false-positive rate on clean real images), averaged over tail classes.",
        "- Localisation (fsa-il rows on the phantom): over the tail examples a cell fused, how much more of M^S lies on the finding's ground-truth mask, and how much more of the finding lies inside M^S, than for a random mask of M^S's area; averaged over tail classes (0 = chance).",
        "- Cost: UNet evaluations per generated sample (classifier-free guidance counts two) and generated samples per second, including the VAE decode; the one-off fit (iterated learning + CAMs, shared by the fsa-il rows) and the time to the preset's samples per class (fit + generation).",
    ]
    if validity:
        void = [c for c, v in validity.items() if not v["valid"]]
        per = "; ".join(f"{c} {v['real']:.2f} -> {v['vae']:.2f}" for c, v in validity.items())
        notes.append(f"- Judge validity (label fidelity, real -> vae round trip): {per}. " + (f"Void for latent rows on: {', '.join(void)} (the autoencoder loses the finding for the judge)." if void else "The judge sees every tail finding through the autoencoder (vae >= 0.8 x real)."))
    orc = run_info.get("oracle") or {}
    if "head_map" in orc:
        notes.append(f"- The oracle (trained on {orc['trained']['config']['n_images']:,} other phantom images) on the same test split: head mAP {orc['head_map']:.3f}, tail mAP {orc['tail_map']:.3f} (`run.json`): the ceiling the benchmark's DenseNet121 is measured against.")
    notes += ["", "## Readings", "", "Each seed draws its own generator fit (iterated learning and CAMs, SMOTE's and t2i's draws), its own held-out floor and FID reference set, and its own classifier start: the intervals and tests cover what a user meets when refitting.", ""]
    notes += readings.render_room(room) + readings.render_comparisons(comp) + readings.render_per_class(per_class, tail)
    atomic_write_text(os.path.join(out, "table1.md"), "\n".join(notes) + "\n")
    atomic_write_text(os.path.join(out, "table1-compact.md"), compact_table(table) + "\n")

    buf = io.StringIO()
    w = csv.writer(buf)
    keys = [k for k, *_ in METRICS] + [k for k, *_ in PAIRED]
    w.writerow(["row", "n_seeds"] + [f"{k}_{s}" for k in keys for s in ("mean", "lo", "hi")])
    for row, e in table.items():
        vals = []
        for k in keys:
            v = e[k]
            vals += [v, "", ""] if isinstance(v, str) else ["", "", ""] if v is None else [v["mean"], v["lo"], v["hi"]]
        w.writerow([row, e["n_seeds"]] + ["" if x is None else x for x in vals])
    atomic_write_text(os.path.join(out, "table1.csv"), buf.getvalue())
    atomic_write_text(os.path.join(out, "table1.json"), json.dumps({"rows": table, "label_fidelity_validity": validity, "room_to_help": room, "comparisons": comp, "per_class": per_class}, indent=2) + "\n")
    if table:
        plot_table(table, os.path.join(out, "figures", "table1.png"), title=f"Table 1 — preset {preset}")
    return table


COMPACT = (
    ("fid_oracle", "tail FID ↓", 2),
    ("kid_oracle", "KID x1000 ↓", 2),
    ("precision_oracle", "precision ↑", 2),
    ("recall_oracle", "recall ↑", 2),
    ("label_fidelity", "label fid. ↑", 2),
    ("near_copies", "near copies ↓", 2),
    ("head_map", "head mAP", 3),
    ("tail_map", "tail mAP", 3),
    ("d_head_map", "Δ head (paired)", 3),
    ("d_tail_map", "Δ tail (paired)", 3),
    ("unet_evals", "UNet evals", 0),
    ("samples_per_s", "samples/s", 1),
    ("to_n_s", "fit + generate (s)", 0),
)


def compact_table(table: dict) -> str:
    """The README's view of Table 1 (oracle feature space, paired mAP), rendered from the same
    aggregate as ``table1.md``."""
    head = ["row"] + [t for _, t, _ in COMPACT]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, e in table.items():
        lines.append("| " + " | ".join([f"`{row}`"] + [fmt(e.get(k), d) for k, _, d in COMPACT]) + " |")
    return "\n".join(lines)


def plot_table(table: dict, path: str, title: str = "") -> None:
    plt = pyplot()
    panels = [(k, t) for k, t, _, _ in METRICS if k in ("fid_oracle", "kid_oracle", "label_fidelity")] + [(k, t) for k, t, _ in PAIRED]
    rows = list(table)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 0.45 * len(rows) + 1.5), sharey=True)
    for ax, (k, t) in zip(np.atleast_1d(axes), panels):
        for i, r in enumerate(rows):
            v = table[r][k]
            if v is None or isinstance(v, str) or v["mean"] is None:
                continue
            err = None if v["lo"] is None else [[v["mean"] - v["lo"]], [v["hi"] - v["mean"]]]
            ax.errorbar(v["mean"], i, xerr=err, fmt="o", color="C0" if r != "none" else "C3", capsize=3)
        base = table.get("none", {}).get(k)
        if k.startswith("d_"):
            ax.axvline(0.0, color="C3", lw=0.8, ls="--")
        elif isinstance(base, dict) and base["mean"] is not None:
            ax.axvline(base["mean"], color="C3", lw=0.8, ls="--")
        ax.set_title(t, fontsize=9)
        ax.grid(alpha=0.3)
    ax0 = np.atleast_1d(axes)[0]
    ax0.set_yticks(range(len(rows)), rows)
    ax0.invert_yaxis()
    fig.suptitle(title + " (mean, 95% interval over seeds; dashed: no augmentation)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
