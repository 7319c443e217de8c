"""Quality of a prior on CXR-Phantom-LT (``ltbench prior evaluate``).

1. VAE reconstruction error on held-out images (the benchmark's own test split, which the
   prior never saw): MSE and PSNR in [0, 1] units.
2. Prompt fidelity: a judge (``SmallCNN``, class-balanced loss) is trained on real phantom
   images of its own seed; for each class, samples generated from the class-name prompt (75
   steps, guidance 4) are scored by it. A sample is "recognised" when the judge's score for
   the prompted class exceeds a per-class threshold set on held-out real images so that 10%
   of real negatives pass (``judge_fpr``). We compare that rate with what real images would
   get (the class's prevalence times the judge's sensitivity plus the false-positive rate on
   the rest: what a prior that ignores the prompt would score) and with the judge's
   sensitivity on real positives.
3. A sample grid: one row per class.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ltbench.data.classes import PAPER_CLASSES, TARGET_PREVALENCE
from ltbench.data.phantom import PhantomConfig, generate, make_labels
from ltbench.nets import SmallCNN, balanced_pos_weight, fit_multilabel, predict_proba, thresholds_at_fpr

from ltbench.config import ROENTGEN_GUIDANCE, ROENTGEN_STEPS, Config, opt


@dataclass(frozen=True)
class QualityConfig(Config):
    n_heldout: int = opt(500, "benchmark test-split images for the reconstruction error", ge=1, le=1_000_000)
    n_judge: int = opt(6000, "real phantom images the judge classifier trains on", ge=1, le=10_000_000)
    judge_seed: int = opt(2000, "a phantom seed of its own (neither the benchmark's nor the prior's)", ge=0)
    judge_epochs: int = opt(8, "training epochs of the prompt-fidelity judge", ge=1, le=10_000)
    judge_fpr: float = opt(0.1, "per-class threshold: this fraction of real negatives is \"recognised\"", gt=0, lt=1)
    n_per_class: int = opt(64, "generated samples per prompted class (64: a rate's standard error <= 0.06)", ge=1, le=1_000_000)
    steps: int = opt(ROENTGEN_STEPS, "sampling steps (RoentGen's model card)", ge=1, le=1000)
    guidance: float = opt(ROENTGEN_GUIDANCE, "classifier-free guidance (RoentGen's model card)", ge=1, le=100)
    seed: int = opt(0, "sampling and judge seed", ge=0)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] -> [N, 1, H, W] quantised like a PNG, as the judge saw real data."""
    return (images.mean(1, keepdim=True) * 255).round() / 255


def train_judge(cfg: QualityConfig, size: int):
    d = generate(PhantomConfig(n=cfg.n_judge, seed=cfg.judge_seed, size=size, min_test_positives=0))
    x = torch.from_numpy(d.images).float()[:, None] / 255
    y = torch.from_numpy(d.labels).float()
    torch.manual_seed(cfg.seed)
    # class-balanced (rare classes must be learned too), on degraded copies like the oracle's:
    # a judge of decoded images must not read texture
    return fit_multilabel(SmallCNN(1, len(PAPER_CLASSES)), x, y, epochs=cfg.judge_epochs, seed=cfg.seed, pos_weight=balanced_pos_weight(y), augment=True, max_blur=0.8)


judge_thresholds = thresholds_at_fpr  # per-class threshold passing ``judge_fpr`` of real negatives


def evaluate_prior(prior, cfg: QualityConfig = QualityConfig(), progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    size = prior.pipe.vae.config.sample_size
    bench = PhantomConfig(n=10_000, seed=0, size=size)
    _, split = make_labels(bench)
    held = generate(bench, indices=np.flatnonzero(split == "test")[: cfg.n_heldout])
    x = torch.from_numpy(held.images).float()[:, None].expand(-1, 3, -1, -1) / 255
    rec = prior.decode(prior.encode(x))
    mse = float(((rec - x) ** 2).mean())
    out = {"config": dataclasses.asdict(cfg), "vae": {"heldout_images": len(x), "mse": mse, "psnr_db": float(10 * np.log10(1.0 / max(mse, 1e-12)))}}

    judge = train_judge(cfg, size)
    real_p = predict_proba(judge, torch.from_numpy(held.images).float()[:, None] / 255)
    thr = judge_thresholds(real_p, held.labels, cfg.judge_fpr)
    per_class = {}
    for k, c in enumerate(tqdm(PAPER_CLASSES, desc="prompt fidelity", disable=not progress)):
        with prior.count_unet() as cnt:
            z = prior.text_to_image([c] * cfg.n_per_class, steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed + k)
        p = predict_proba(judge, _gray(prior.decode(z)))
        pos = held.labels[:, k] == 1
        sens = float((real_p[pos, k] > thr[k]).mean()) if pos.any() else float("nan")
        prev = TARGET_PREVALENCE[c]
        per_class[c] = {
            "recognised": float((p[:, k] > thr[k]).mean()),
            "prevalence": prev,
            "real_image_rate": prev * sens + (1 - prev) * cfg.judge_fpr if pos.any() else None,
            "judge_sensitivity_on_real": sens if pos.any() else None,
            "unet_evals_per_sample": cnt.rows / cfg.n_per_class,
        }
    out["prompt_fidelity"] = per_class
    return out


def sample_grid(prior, path: str, n_cols: int = 8, steps: int = ROENTGEN_STEPS, guidance: float = ROENTGEN_GUIDANCE, seed: int = 0) -> str:
    """A PNG: one row per class, ``n_cols`` samples from its class-name prompt (written
    atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ltbench.utils.io import save_figure

    rows = [prior.decode(prior.text_to_image([c] * n_cols, steps=steps, guidance=guidance, seed=seed + k)).mean(1).numpy() for k, c in enumerate(PAPER_CLASSES)]
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 1.1, len(rows) * 1.15))
    for r, (c, imgs) in enumerate(zip(PAPER_CLASSES, rows)):
        for j in range(n_cols):
            ax = axes[r, j]
            ax.imshow(imgs[j], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(c.replace(" ", "\n"), fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(f"phantom prior: {steps} steps, guidance {guidance}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def render_readme(quality: dict, training: dict) -> str:
    """The prior's README, generated from ``quality.json`` and ``training_config.json``."""
    t = training.get("preset_config", {})
    v = quality["vae"]
    lines = [
        "# The phantom prior",
        "",
        "A Stable-Diffusion-format pipeline (VAE, conditional UNet, CLIP text encoder, word-level",
        "tokenizer, DDIM scheduler) trained from scratch on CXR-Phantom-LT by",
        "`ltbench prior train --preset phantom`; the files here are what that command wrote.",
        f"It is a stand-in for RoentGen on the embedded benchmark, not a chest X-ray model. Training took "
        f"{training.get('train_seconds', float('nan')) / 60:.0f} min on a 2-core CPU ({t.get('vae_steps')} VAE steps, {t.get('unet_steps')} UNet steps, "
        f"{t.get('n_images')} phantom images of seed {t.get('phantom_seed')}).",
        "",
        "Quality below is written by `ltbench prior evaluate --prior phantom` (`quality.json`).",
        "",
        f"- VAE reconstruction on {v['heldout_images']} held-out benchmark test images: MSE {v['mse']:.5f}, PSNR {v['psnr_db']:.1f} dB.",
        f"- Prompt fidelity: {quality['config']['n_per_class']} samples per class-name prompt at {quality['config']['steps']} steps, guidance {quality['config']['guidance']}, "
        f"scored by a small CNN trained on real phantom images; recognised = score above a per-class threshold that passes "
        f"{quality['config']['judge_fpr']:.0%} of real negatives. 'real-image rate' is what real images drawn at the class's prevalence would score "
        "(a prior ignoring its prompt); the judge misses subtle findings, so its sensitivity bounds what can be recognised.",
        "",
        "| prompt | recognised | real-image rate | prevalence | judge sensitivity on real positives | UNet evals / sample |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c, r in quality["prompt_fidelity"].items():
        sens = "n/a" if r["judge_sensitivity_on_real"] is None else f"{r['judge_sensitivity_on_real']:.2f}"
        base = "n/a" if r["real_image_rate"] is None else f"{r['real_image_rate']:.2f}"
        lines.append(f"| {c} | {r['recognised']:.2f} | {base} | {r['prevalence']:.3f} | {sens} | {r['unet_evals_per_sample']:.0f} |")
    rt = quality.get("round_trip")
    if rt:
        lines += [
            "",
            "## Round-trip fidelity of the autoencoder",
            "",
            f"Real phantom images of a seed no model saw, encoded and decoded by the VAE, judged by the oracle (`{rt['oracle']}`, per-class thresholds at a fixed false-positive rate on clean images). "
            "A latent-space method cannot show a finding its autoencoder loses, and the oracle can only judge decoded images where the round trip keeps its calls: "
            "positives called >= 0.8 x the clean rate, negatives <= 1.5 x the clean rate (or within 1 point of it). FID: oracle features, round trips of the positives vs the positives.",
            "",
            "| class | positives: clean | round trip | negatives: clean | round trip | round-trip FID | kept |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for c, r in rt["per_class"].items():
            f = "n/a" if r.get("fid") is None else f"{r['fid']:.2f}"
            lines.append(f"| {c} (n={r['n_pos']}/{r['n_neg']}) | {r['clean_pos']:.2f} | {r['rt_pos']:.2f} | {r['clean_neg']:.3f} | {r['rt_neg']:.3f} | {f} | {'yes' if r['ok'] else 'NO'} |")
    lines += ["", "![samples](sample_grid.png)", ""]
    return "\n".join(lines)


def run_evaluate(prior: str = "phantom", out: str | None = None, cfg: QualityConfig = QualityConfig(), oracle: str = "phantom", device: str = "auto", precision: str = "auto", command: str = "ltbench prior evaluate", progress: bool = True) -> dict:
    """``ltbench prior evaluate``: the prior's quality (``evaluate_prior``), with ``oracle`` (or
    "none") the autoencoder's round-trip fidelity per class, written with a sample grid and a
    generated README into ``out`` (default: the prior's own folder). Returns quality.json."""
    import json
    import os

    from ltbench.prior.pipeline import load_prior
    from ltbench.utils.io import atomic_write_json, atomic_write_text
    from ltbench.utils.provenance import git_sha, prior_weights

    pipe = load_prior(prior, device=device, precision=precision)
    out = out or pipe.path
    os.makedirs(out, exist_ok=True)
    quality = evaluate_prior(pipe, cfg, progress=progress)
    if oracle != "none":
        from ltbench.eval.oracle import load_oracle, oracle_file
        from ltbench.eval.roundtrip import round_trip_fidelity, round_trip_sample

        images, labels = round_trip_sample(size=pipe.pipe.vae.config.sample_size)
        quality["round_trip"] = {"oracle": oracle, "per_class": round_trip_fidelity(pipe, load_oracle(oracle), images, labels, fid_weights=oracle_file(oracle))}
    quality["measured"] = {"command": command, "git_sha": git_sha(), "weights_sha256": prior_weights(pipe.path)}
    atomic_write_json(os.path.join(out, "quality.json"), quality)
    sample_grid(pipe, os.path.join(out, "sample_grid.png"), steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed)
    training = {}
    if os.path.exists(os.path.join(pipe.path, "training_config.json")):
        with open(os.path.join(pipe.path, "training_config.json")) as f:
            training = json.load(f)
    atomic_write_text(os.path.join(out, "README.md"), render_readme(quality, training))
    return quality
