"""``python -m ltbench.reproduce diagnostics --run DIR``: the method measured against the
phantom's ground truth.

**Localisation.** fsa-il takes the tail example's code where its class activation map is high,
M^S = [CAM > tau_h] (Eq. 6), on the premise that the CAM finds the finding. The phantom knows
where every finding was drawn, so the premise can be checked per tail class on the train
images that carry the class, with the run's own IL fit and CAMs:

* ``finding_in_ms``: the share of the finding's ground-truth mask (area-averaged onto the
  latent grid) that lies inside M^S (recall);
* ``ms_on_finding``: the share of M^S that lies on the finding (precision);
* each beside what a random mask of M^S's area gives (its expectation: M^S's area fraction for
  recall, the finding's area fraction for precision), the floor a CAM has to beat.

Per image, then mean over the class's images. Writes ``TO/localisation.json`` (with the
command, commit and the fit's identity), ``TO/localisation.md`` and ``TO/localisation.png``
(CAMs over images of each tail class with the finding's contour and M^S's outline).
"""

import dataclasses
import json
import os

import numpy as np


def grid_fraction(masks: np.ndarray, grid: tuple) -> np.ndarray:
    """bool[N, S, S] pixel masks -> float32[N, h, w]: the share of each grid cell they cover
    (S divisible by h and w)."""
    n, s, t = masks.shape
    h, w = grid
    if s % h or t % w:
        raise ValueError(f"mask size {s}x{t} is not a multiple of the grid {h}x{w}")
    return masks.reshape(n, h, s // h, w, t // w).mean((2, 4)).astype(np.float32)


def localisation(ms: np.ndarray, finding: np.ndarray) -> dict:
    """Per image: ``ms`` bool[N, h, w] (M^S), ``finding`` float[N, h, w] in [0, 1] (the share of
    each cell the finding covers). Returns float arrays [N]: finding_in_ms, ms_on_finding and
    their random-mask expectations random_finding_in_ms (= M^S's area fraction) and
    random_ms_on_finding (= the finding's area fraction). An image whose finding or M^S is
    empty gets NaN where the share is undefined."""
    ms = np.asarray(ms, bool)
    finding = np.asarray(finding, np.float32)
    if ms.shape != finding.shape or ms.ndim != 3:
        raise ValueError(f"M^S {ms.shape} and finding {finding.shape} must both be [N, h, w]")
    cells = ms.shape[1] * ms.shape[2]
    overlap = (finding * ms).sum((1, 2))
    area_f, area_m = finding.sum((1, 2)), ms.sum((1, 2)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "finding_in_ms": np.where(area_f > 0, overlap / area_f, np.nan),
            "ms_on_finding": np.where(area_m > 0, overlap / area_m, np.nan),
            "random_finding_in_ms": area_m / cells,
            "random_ms_on_finding": area_f / cells,
        }


def tail_localisation(ctx, tau_h: float | None = None) -> dict:
    """Per tail class, the mean localisation of M^S on the train images carrying the class, with
    the IL fit and CAMs of the run ``ctx`` (a table1 ``Context`` on the in-memory phantom)."""
    from ltbench.data.phantom import generate, make_labels

    p = ctx.preset
    if p.data_root is not None:
        raise ValueError("localisation needs the phantom's ground-truth masks: run it on a phantom preset rendered in memory (no --data)")
    ctx.load_data()
    _, cams, _ = ctx.il_fit()
    tau = p.fusion.tau_h if tau_h is None else tau_h
    _, split = make_labels(p.phantom)
    train_idx = np.flatnonzero(split == "train")
    out = {}
    for c in ctx.tail:
        k = ctx.classes.index(c)
        rows = np.flatnonzero(ctx.y_train[:, k] == 1)
        masks = generate(p.phantom, indices=train_idx[rows]).masks[:, k]
        cam = np.asarray(cams[rows], dtype=np.float32)
        loc = localisation(cam > tau, grid_fraction(masks, cam.shape[1:]))
        out[c] = {"images": int(len(rows)), **{key: float(np.nanmean(v)) for key, v in loc.items()}, "cam_std_across_images": float(cam.std(0).mean())}
        out[c]["_example_rows"] = rows[:4].tolist()
    return {"tau_h": tau, "per_class": out}


def figure(ctx, result: dict, path: str) -> None:
    """Up to four train images per tail class: the image, its CAM with M^S's outline and the
    finding's ground-truth contour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ltbench.data.phantom import generate, make_labels

    p = ctx.preset
    _, cams, _ = ctx.il_fit()
    _, split = make_labels(p.phantom)
    train_idx = np.flatnonzero(split == "train")
    tail = list(result["per_class"])
    fig, axes = plt.subplots(len(tail), 8, figsize=(16, 2.1 * len(tail)), squeeze=False)
    for i, c in enumerate(tail):
        k = ctx.classes.index(c)
        rows = result["per_class"][c]["_example_rows"]
        sample = generate(p.phantom, indices=train_idx[rows])
        for j in range(4):
            a_img, a_cam = axes[i, 2 * j], axes[i, 2 * j + 1]
            for a in (a_img, a_cam):
                a.set_xticks([])
                a.set_yticks([])
            if j >= len(rows):
                a_img.axis("off")
                a_cam.axis("off")
                continue
            s = sample.images.shape[-1]
            a_img.imshow(sample.images[j], cmap="gray", vmin=0, vmax=255)
            a_img.contour(sample.masks[j, k], levels=[0.5], colors="lime", linewidths=0.8)
            cam = np.asarray(cams[rows[j]], dtype=np.float32)
            a_cam.imshow(cam, cmap="magma", vmin=0, vmax=1, extent=(0, s, s, 0))
            a_cam.contour(np.kron(cam > result["tau_h"], np.ones((s // cam.shape[0], s // cam.shape[1]))), levels=[0.5], colors="cyan", linewidths=0.8, extent=(0, s, 0, s), origin="upper")
            a_cam.contour(sample.masks[j, k], levels=[0.5], colors="lime", linewidths=0.8)
            if j == 0:
                a_img.set_ylabel(c, fontsize=8)
    fig.suptitle(f"EigenCAM (magma) with M^S = CAM > {result['tau_h']} (cyan) and the finding's ground truth (green)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render_md(res: dict) -> str:
    lines = [
        "# Localisation of M^S against the phantom's ground truth",
        "",
        f"`{res['measured']['command']}` at {res['measured']['git_sha'][:12]}, on the IL fit and CAMs of `{res['run']}` (preset `{res['preset']}`); M^S = CAM > {res['tau_h']}.",
        "",
        "| tail class | images | finding inside M^S | random mask of M^S's area | M^S on the finding | random mask | CAM std across images |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, v in res["per_class"].items():
        lines.append(f"| {c} | {v['images']} | {v['finding_in_ms']:.2f} | {v['random_finding_in_ms']:.2f} | {v['ms_on_finding']:.2f} | {v['random_ms_on_finding']:.2f} | {v['cam_std_across_images']:.3f} |")
    lines += [
        "",
        "A CAM that finds the finding puts more of it inside M^S than a random mask of the same area does (left pair), and more of M^S on it (right pair). "
        "Where the two columns of a pair are close, fusion takes the tail code from where the finding is no more often than chance.",
        "",
    ]
    return "\n".join(lines)


def run_diagnostics(run: str, to: str, progress: bool = True, command: str = "ltbench.reproduce.diagnostics.run_diagnostics") -> dict:
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.provenance import git_sha
    from ltbench.reproduce.table1 import Context
    from ltbench.utils.io import atomic_write_json, atomic_write_text

    with open(os.path.join(run, "run.json")) as f:
        info = json.load(f)
    name = info["preset"]
    if name not in PRESETS:
        raise ValueError(f"{run} was made with preset {name!r}, which this ltbench does not have")
    # the run's own inputs (a --data/--prior/--oracle given to table1), the preset for the rest
    preset = dataclasses.replace(PRESETS[name], **{k: info["config"][k] for k in ("data_root", "prior", "oracle", "device") if k in info["config"]})
    ctx = Context(preset, run, progress)
    res = tail_localisation(ctx)
    figure(ctx, res, os.path.join(to, "localisation.png"))
    for v in res["per_class"].values():
        v.pop("_example_rows")
    stamp_file = os.path.join(run, "work", "il", "stamp.json")
    il_stamp = json.load(open(stamp_file)) if os.path.exists(stamp_file) else None
    res = {"run": run, "preset": name, **res, "measured": {"command": command, "git_sha": git_sha(), "il_fit_stamp": il_stamp, "inputs": ctx.inputs}}
    os.makedirs(to, exist_ok=True)
    atomic_write_json(os.path.join(to, "localisation.json"), res)
    atomic_write_text(os.path.join(to, "localisation.md"), render_md(res))
    return res


__all__ = ["grid_fraction", "localisation", "run_diagnostics", "tail_localisation"]
