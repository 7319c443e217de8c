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

Per image, then mean over the class's images (``ltbench.eval.localisation``). Writes ``TO/localisation.json`` (with the
command, commit and the fit's identity), ``TO/localisation.md`` and ``TO/localisation.png``
(CAMs over images of each tail class with the finding's contour and M^S's outline).
"""

import json
import os

import numpy as np

from ltbench.reproduce.diagnostics_report import render_localisation_md
from ltbench.reproduce.figures import pyplot, save_figure
from ltbench.reproduce.stages import Context


def cams_for(ctx: Context, rows: np.ndarray, method: str, layers: str, batch_size: int = 256) -> np.ndarray:
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


def tail_localisation(ctx: Context, tau_h: float | None = None, cam: tuple | None = None) -> dict:
    """Per tail class, the localisation of M^S on the train images carrying the class, with the
    IL fit of the run ``ctx`` (on the in-memory phantom) and its CAMs (``cam`` = None) or those
    of another CAM choice ``(method, layers)``."""
    from ltbench.data.phantom import split_masks
    from ltbench.eval.localisation import localise

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
        out[c] = {"images": int(len(rows)), **localise(cam_c, tau, split_masks(p.phantom, "train", rows, k)), "cam_std_across_images": float(cam_c.std(0).mean())}
        out[c]["_example_rows"] = rows[:4].tolist()
    return {"tau_h": tau, "cam": list(cam) if cam else [p.fusion.cam, p.fusion.cam_layers], "per_class": out}


def figure(ctx: Context, result: dict, path: str) -> None:
    """Up to four train images per tail class: the image, the run's CAM with M^S's outline and
    the finding's ground-truth contour."""
    from ltbench.data.phantom import generate, make_labels

    plt = pyplot()
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
    save_figure(fig, path, dpi=90)


def compare_cams(ctx: Context, progress: bool = True) -> list:
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


def run_diagnostics(run: str, to: str, progress: bool = True, command: str = "ltbench.reproduce.diagnostics.run_diagnostics") -> dict:
    from ltbench.utils.io import atomic_write_json, atomic_write_text
    from ltbench.utils.provenance import git_sha

    ctx = Context.from_run(run, progress)
    res = tail_localisation(ctx)
    figure(ctx, res, os.path.join(to, "localisation.png"))
    for v in res["per_class"].values():
        v.pop("_example_rows")
    res["cam_choices"] = compare_cams(ctx, progress)
    stamp_file = os.path.join(run, "work", "fit-seed0", "stamp.json")  # the diagnostics read seed 0's fit
    il_stamp = json.load(open(stamp_file)) if os.path.exists(stamp_file) else None
    res = {"run": run, "preset": ctx.preset.name, **res, "measured": {"command": command, "git_sha": git_sha(), "il_fit_stamp": il_stamp, "inputs": ctx.inputs}}
    os.makedirs(to, exist_ok=True)
    atomic_write_json(os.path.join(to, "localisation.json"), res)
    atomic_write_text(os.path.join(to, "localisation.md"), render_localisation_md(res))
    return res


__all__ = ["cams_for", "compare_cams", "run_diagnostics", "tail_localisation"]
