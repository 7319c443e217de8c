"""Markdown and figures of the diagnostics, rendered from their JSON results only (the
localisation of M^S, the CAM choices, the refinement sweep): what ``diagnostics`` and
``refine-sweep`` write beside their JSON and what the docs' generated blocks show."""

import numpy as np

from ltbench.reproduce.figures import pyplot, save_figure


def signed_interval(d: dict) -> str:
    """{"mean", "lo", "hi"} -> "+0.12 [+0.05, +0.19]" (no brackets without an interval)."""
    return f"{d['mean']:+.2f}" + ("" if d["lo"] is None else f" [{d['lo']:+.2f}, {d['hi']:+.2f}]")


def render_localisation_md(res: dict) -> str:
    lines = [
        "# Localisation of M^S against the phantom's ground truth",
        "",
        f"`{res['measured']['command']}` at {res['measured']['git_sha'][:12]}, on the IL fit and CAMs of `{res['run']}` (preset `{res['preset']}`); M^S = CAM > {res['tau_h']}.",
        "",
        "| tail class | images | finding inside M^S | random mask of M^S's area | difference [95% CI] | M^S on the finding | random mask | difference [95% CI] | CAM std across images |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, v in res["per_class"].items():
        lines.append(f"| {c} | {v['images']} | {v['finding_in_ms']:.2f} | {v['random_finding_in_ms']:.2f} | {signed_interval(v['finding_in_ms_minus_random'])} | {v['ms_on_finding']:.2f} | {v['random_ms_on_finding']:.2f} | {signed_interval(v['ms_on_finding_minus_random'])} | {v['cam_std_across_images']:.3f} |")
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
        cells = [f"{signed_interval(ch['per_class'][c]['finding_in_ms'])}; {signed_interval(ch['per_class'][c]['ms_on_finding'])} (area {ch['per_class'][c]['area']:.2f})" for c in tail]
        mark = " (default)" if [ch["cam"], ch["layers"]] == res["cam"] else ""
        rows.append(f"| {ch['cam']}{mark} | {ch['layers']} | {ch['score']:+.3f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _mean(point: dict, key: str) -> float:
    return float(point["metrics"]["mean"][key])


def _lf(point: dict) -> float:
    return float(point["label_fidelity"]["mean_tail"])


def _ci(paired: dict | None, metric: str, fmt: str) -> str:
    if not paired:
        return ""
    v = paired[metric]
    return f"{v['estimate']:{fmt}} [{v['low']:{fmt}}, {v['high']:{fmt}}]"


def render_refine_sweep_md(res: dict) -> str:
    iv = res["intervals"]
    level = round(100 * iv["level"])
    lines = [
        "# Refinement sweep on paired fusions",
        "",
        f"`{res['measured']['command']}` at {res['measured']['git_sha'][:12]}, on the IL fit of `{res['run']}` (preset `{res['preset']}`): "
        f"{res['n_per_class']} fusions per tail class drawn once (seed 0), refined with k of {res['fusion']['refine_schedule']} steps; "
        "distribution metrics in the oracle's feature space, per tail class then averaged; label fidelity = share of samples the oracle calls positive for the class they were made for. "
        f"Δ = the paired difference from @0 of the same decoder (for the authors' @0: from ours), with a {level}% interval from {iv['n_boot']} paired bootstrap replicates "
        "(the same fusions resampled at every k, and the reference images); it covers the draw of fusions given this one IL fit.",
        "",
        "| decoder | mode | k | UNet evals | latent change vs @0 | FID | ΔFID | KID x1000 | precision | recall | label fid. | Δ label fid. |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for pt in res["points"]:
        if pt.get("variant"):
            continue
        lines.append(
            f"| {pt['decoder']} | {pt['mode']} | {pt['k']} | {pt['unet_evals_per_sample']} | {pt['latent_change']:.3f} | {_mean(pt, 'fid'):.2f} | {_ci(pt.get('paired'), 'fid', '+.2f')} | "
            f"{1000 * _mean(pt, 'kid'):.1f} | {_mean(pt, 'precision'):.2f} | {_mean(pt, 'recall'):.2f} | {_lf(pt):.2f} | {_ci(pt.get('paired'), 'label_fidelity', '+.3f')} |"
        )
    gaps = res.get("authors_gap", {})
    if gaps:
        lines += ["", f"The authors' decoder's @0 -> @k change minus ours ({level}% paired interval; negative: refinement gains more from their @0):", "",
                  "| mode | k | FID | label fid. |", "|---|---:|---|---|"]
        for name, v in gaps.items():
            _, mode, k = name.split("/")
            lines.append(f"| {mode} | {k} | {_ci(v, 'fid', '+.2f')} | {_ci(v, 'label_fidelity', '+.3f')} |")
    variants = [pt for pt in res["points"] if pt.get("variant")]
    if variants:
        lines += ["", f"One fusion choice changed at a time (eval decoder, the run's config otherwise), against the run's config at the same k ({level}% paired interval):", "",
                  "| choice | k | FID | ΔFID | label fid. | Δ label fid. |", "|---|---:|---:|---|---:|---|"]
        for pt in variants:
            lines.append(f"| {pt['variant']} | {pt['k']} | {_mean(pt, 'fid'):.2f} | {_ci(pt.get('paired'), 'fid', '+.2f')} | {_lf(pt):.2f} | {_ci(pt.get('paired'), 'label_fidelity', '+.3f')} |")
    lines.append("")
    return "\n".join(lines)


def refine_sweep_figure(res: dict, path: str) -> None:
    """FID and label fidelity against k, each as the paired difference from @0 of the same
    decoder with its bootstrap interval (the authors' @0 against ours in the title)."""
    plt = pyplot()
    level = round(100 * res["intervals"]["level"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0))
    for decoder in res["decoders"]:
        swept = [pt for pt in res["points"] if pt["decoder"] == decoder and not pt.get("variant")]
        at0 = [pt for pt in swept if pt["k"] == 0]
        for j, mode in enumerate(res["modes"]):
            pts = at0 + [pt for pt in swept if pt["mode"] == mode]
            ks = np.array([pt["k"] for pt in pts], float) * (1 + 0.04 * (2 * j - 1 + (decoder != "eval")))  # dodge
            style = "-" if decoder == "eval" else "--"
            for ax, metric in zip(axes, ("fid", "label_fidelity")):
                d = [pt["paired"][metric] if pt["k"] > 0 else {"estimate": 0.0, "low": 0.0, "high": 0.0} for pt in pts]
                est = np.array([v["estimate"] for v in d])
                err = np.array([[e - v["low"] for e, v in zip(est, d)], [v["high"] - e for e, v in zip(est, d)]])
                ax.errorbar(ks, est, yerr=err, fmt=style, marker="o", ms=4, capsize=2, label=f"{decoder}, {mode}")
    titles = (f"tail FID (oracle features): Δ vs @0, {level}% paired interval", f"label fidelity: Δ vs @0, {level}% paired interval")
    for a, t in zip(axes, titles):
        a.axhline(0, color="grey", lw=0.8)
        a.set_xscale("symlog", linthresh=1)
        a.set_xlim(-0.2, 1.3 * max(res["ks"]))
        a.set_xticks(res["ks"])
        a.set_xticklabels([str(k) for k in res["ks"]])
        a.set_xlabel("refinement steps k")
        a.set_title(t, fontsize=9)
    axes[0].legend(fontsize=8)
    authors = next((pt["paired"] for pt in res["points"] if pt["decoder"] == "train-batch2" and pt["k"] == 0 and not pt.get("variant")), None)
    note = f"\ntrain-batch2 @0 - eval @0: FID {_ci(authors, 'fid', '+.2f')}, label fid. {_ci(authors, 'label_fidelity', '+.3f')}" if authors else ""
    fig.suptitle("one set of fusions refined at every k, each decoder against its own @0" + note, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


__all__ = ["refine_sweep_figure", "render_cam_choices", "render_localisation_md", "render_refine_sweep_md", "signed_interval"]
