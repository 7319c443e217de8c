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


def summarise(loc: dict) -> dict:
    """Per-image localisation arrays (``localisation``) -> means, and CAM minus a random mask of
    M^S's area per image with a 95% t-interval over images."""
    from ltbench.eval.classifier import mean_interval

    out = {key: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for key, v in loc.items()}
    for key in ("finding_in_ms", "ms_on_finding"):
        d = loc[key] - loc[f"random_{key}"]
        iv = mean_interval(d[np.isfinite(d)])
        out[f"{key}_minus_random"] = {"mean": iv["mean"], "lo": iv["lo"], "hi": iv["hi"]}
    return out


def train_masks(phantom, rows: np.ndarray, k: int) -> np.ndarray:
    """Ground-truth masks bool[len(rows), S, S] of class ``k`` for train rows ``rows`` (positions
    in the phantom's train split), rendered again from the phantom's config."""
    from ltbench.data.phantom import generate, make_labels

    _, split = make_labels(phantom)
    return generate(phantom, indices=np.flatnonzero(split == "train")[np.asarray(rows)]).masks[:, k]


def cams_for(ctx, rows: np.ndarray, method: str, layers: str, batch_size: int = 256) -> np.ndarray:
    """CAMs float32[len(rows), h, w] of train rows ``rows`` with a CAM choice (``FusionConfig.cam``,
    ``cam_layers``), as ``compute_cams`` makes them for fusion (class-targeted maps explain each
    example's rarest label, by the train split's prevalence)."""
    import torch

    from ltbench.method.cam import batch_cams

    model, _, _ = ctx.il_fit()
    z = ctx.latents()
    prevalence = (ctx.y_train > 0).mean(0)
    out = []
    for i in range(0, len(rows), batch_size):
        r = np.asarray(rows[i : i + batch_size])
        out.append(batch_cams(model, z[torch.from_numpy(r)], ctx.y_train[r], prevalence, method, layers)[0])
    return np.concatenate(out) if out else np.zeros((0, *z.shape[2:]), np.float32)


def tail_localisation(ctx, tau_h: float | None = None, cam: tuple | None = None) -> dict:
    """Per tail class, the mean localisation of M^S on the train images carrying the class, with
    the IL fit of the run ``ctx`` (a table1 ``Context`` on the in-memory phantom) and its CAMs
    (``cam`` = None) or those of another CAM choice ``(method, layers)``."""
    p = ctx.preset
    if p.data_root is not None:
        raise ValueError("localisation needs the phantom's ground-truth masks: run it on a phantom preset rendered in memory (no --data)")
    ctx.load_data()
    _, cams, _ = ctx.il_fit()
    tau = p.fusion.tau_h if tau_h is None else tau_h
    out = {}
    for c in ctx.tail:
        k = ctx.classes.index(c)
        rows = np.flatnonzero(ctx.y_train[:, k] == 1)
        cam_c = np.asarray(cams[rows], dtype=np.float32) if cam is None else cams_for(ctx, rows, *cam)
        loc = localisation(cam_c > tau, grid_fraction(train_masks(p.phantom, rows, k), cam_c.shape[1:]))
        out[c] = {"images": int(len(rows)), **summarise(loc), "cam_std_across_images": float(cam_c.std(0).mean())}
        out[c]["_example_rows"] = rows[:4].tolist()
    return {"tau_h": tau, "cam": list(cam) if cam else [p.fusion.cam, p.fusion.cam_layers], "per_class": out}


def figure(ctx, result: dict, path: str) -> None:
    """Up to four train images per tail class: the image, the run's CAM with M^S's outline and
    the finding's ground-truth contour."""
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
    cam, layers = result["cam"]
    fig.suptitle(f"{cam} on the {'last block' if layers == 'last' else 'blocks after the first'} (magma) with M^S = CAM > {result['tau_h']} (cyan) and the finding's ground truth (green)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def compare_cams(ctx, progress: bool = True) -> list:
    """Every CAM choice (method x layers) on the run's IL fit: per tail class the lifts of M^S
    over a random mask of its area (finding inside M^S, M^S on the finding), and ``score``, the
    mean of the two lifts over the tail classes, by which the default was chosen."""
    from tqdm.auto import tqdm

    from ltbench.method.cam import CAM_LAYERS, CAM_METHODS

    out = []
    for method, layers in tqdm([(m, l) for m in CAM_METHODS for l in CAM_LAYERS], desc="cam choices", disable=not progress):
        r = tail_localisation(ctx, cam=(method, layers))["per_class"]
        lifts = {c: {key: v[f"{key}_minus_random"] for key in ("finding_in_ms", "ms_on_finding")} | {"area": v["random_finding_in_ms"]} for c, v in r.items()}
        score = float(np.mean([(l["finding_in_ms"]["mean"] + l["ms_on_finding"]["mean"]) / 2 for l in lifts.values()]))
        out.append({"cam": method, "layers": layers, "score": score, "per_class": lifts})
    return out


def _iv(d: dict) -> str:
    return f"{d['mean']:+.2f}" + ("" if d["lo"] is None else f" [{d['lo']:+.2f}, {d['hi']:+.2f}]")


def render_md(res: dict) -> str:
    lines = [
        "# Localisation of M^S against the phantom's ground truth",
        "",
        f"`{res['measured']['command']}` at {res['measured']['git_sha'][:12]}, on the IL fit and CAMs of `{res['run']}` (preset `{res['preset']}`); M^S = CAM > {res['tau_h']}.",
        "",
        "| tail class | images | finding inside M^S | random mask of M^S's area | difference [95% CI] | M^S on the finding | random mask | difference [95% CI] | CAM std across images |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, v in res["per_class"].items():
        lines.append(f"| {c} | {v['images']} | {v['finding_in_ms']:.2f} | {v['random_finding_in_ms']:.2f} | {_iv(v['finding_in_ms_minus_random'])} | {v['ms_on_finding']:.2f} | {v['random_ms_on_finding']:.2f} | {_iv(v['ms_on_finding_minus_random'])} | {v['cam_std_across_images']:.3f} |")
    lines += [
        "",
        "A CAM that finds the finding puts more of it inside M^S than a random mask of the same area does (left pair), and more of M^S on it (right pair). "
        "Where the two columns of a pair are close, fusion takes the tail code from where the finding is no more often than chance.",
        "",
    ]
    if res.get("cam_choices"):
        lines += ["## CAM choices on the same fit", "", render_cam_choices(res), ""]
    return "\n".join(lines)


def render_cam_choices(res: dict) -> str:
    """One line per CAM choice: per tail class the two lifts over a random mask (finding inside
    M^S; M^S on the finding) with 95% intervals over images, and the score."""
    tail = list(res["per_class"])
    head = "| CAM | layers | score | " + " | ".join(tail) + " |"
    rows = [head, "|" + "---|" * (3 + len(tail))]
    for ch in sorted(res["cam_choices"], key=lambda e: -e["score"]):
        cells = [f"{_iv(ch['per_class'][c]['finding_in_ms'])}; {_iv(ch['per_class'][c]['ms_on_finding'])} (area {ch['per_class'][c]['area']:.2f})" for c in tail]
        mark = " (default)" if [ch["cam"], ch["layers"]] == res["cam"] else ""
        rows.append(f"| {ch['cam']}{mark} | {ch['layers']} | {ch['score']:+.3f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run_context(run: str, progress: bool = True):
    """A table1 ``Context`` on the run folder ``run`` (its cached stages in ``run/work`` are
    reused, missing ones recomputed): the run's own inputs (a --data/--prior/--oracle given to
    table1), its preset for the rest. Returns ``(ctx, preset name)``."""
    from ltbench.reproduce.presets import PRESETS
    from ltbench.reproduce.table1 import Context

    with open(os.path.join(run, "run.json")) as f:
        info = json.load(f)
    name = info["preset"]
    if name not in PRESETS:
        raise ValueError(f"{run} was made with preset {name!r}, which this ltbench does not have")
    preset = dataclasses.replace(PRESETS[name], **{k: info["config"][k] for k in ("data_root", "prior", "oracle", "device") if k in info["config"]})
    return Context(preset, run, progress), name


def run_diagnostics(run: str, to: str, progress: bool = True, command: str = "ltbench.reproduce.diagnostics.run_diagnostics") -> dict:
    from ltbench.reproduce.provenance import git_sha
    from ltbench.utils.io import atomic_write_json, atomic_write_text

    ctx, name = run_context(run, progress)
    res = tail_localisation(ctx)
    figure(ctx, res, os.path.join(to, "localisation.png"))
    for v in res["per_class"].values():
        v.pop("_example_rows")
    res["cam_choices"] = compare_cams(ctx, progress)
    stamp_file = os.path.join(run, "work", "il", "stamp.json")
    il_stamp = json.load(open(stamp_file)) if os.path.exists(stamp_file) else None
    res = {"run": run, "preset": name, **res, "measured": {"command": command, "git_sha": git_sha(), "il_fit_stamp": il_stamp, "inputs": ctx.inputs}}
    os.makedirs(to, exist_ok=True)
    atomic_write_json(os.path.join(to, "localisation.json"), res)
    atomic_write_text(os.path.join(to, "localisation.md"), render_md(res))
    return res


__all__ = ["compare_cams", "grid_fraction", "localisation", "run_diagnostics", "tail_localisation"]
