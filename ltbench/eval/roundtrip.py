"""Round-trip fidelity: does a prior's autoencoder keep every finding? The floor of every
latent-space method (a fused latent is decoded by the same VAE), and the condition under which
the oracle can judge decoded images at all.

Real phantom images of a seed no model trains on are encoded (posterior mean) and decoded by
the prior's VAE; the oracle's per-class calls on the clean images and on their round trips are
compared, for real positives and real negatives. ``prior`` is any object with ``encode`` /
``decode`` (``ltbench.prior.pipeline.Prior``): this module does not import the prior layer."""

import numpy as np

from ltbench.data.classes import PAPER_CLASSES
from ltbench.data.phantom import PhantomConfig, generate, make_labels

# Round-trip fidelity: the autoencoder must keep every finding (the floor of any latent method).
RT_POSITIVE_KEEP = 0.8  # round trips of real positives: called positive at >= 0.8 x the clean rate
RT_NEGATIVE_INVENT = 1.5  # round trips of real negatives: called positive at <= 1.5 x the clean rate ...
RT_NEGATIVE_SLACK = 0.01  # ... or within 1 point of it: 1.5 x a 0.5% rate is below the binomial noise of ~1,500 negatives


def round_trip_sample(n_pos: int = 150, n_neg: int = 600, seed: int = 5000, size: int = 64):
    """Real phantom images of a seed no model trains on: up to ``n_pos`` positives of every
    class plus ``n_neg`` random images. Returns (uint8[N, S, S], uint8[N, K])."""
    cfg = PhantomConfig(n=60_000, seed=seed, size=size, min_test_positives=0)
    labels, _ = make_labels(cfg)
    idx = set(np.random.default_rng(seed).choice(len(labels), n_neg, replace=False).tolist())
    for k in range(labels.shape[1]):
        idx |= set(np.flatnonzero(labels[:, k] == 1)[:n_pos].tolist())
    d = generate(cfg, indices=np.array(sorted(idx)))
    return d.images, d.labels


def round_trip(prior, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """uint8 [N, H, W] -> the same images encoded (posterior mean) and decoded by the prior's
    VAE, as uint8 [N, H, W] (the ``vae`` row of Table 1)."""
    if len(images) == 0:
        return np.zeros_like(images)
    from ltbench.data.images import gray_to_unit_rgb

    # a batch at a time: no float copy of all the images
    return np.concatenate([prior.decode_uint8(prior.encode(gray_to_unit_rgb(images[i : i + batch_size]), batch_size=batch_size), batch_size=batch_size) for i in range(0, len(images), batch_size)])


def round_trip_fidelity(prior, oracle, images: np.ndarray, labels: np.ndarray, classes=PAPER_CLASSES, fid_weights: str | None = None) -> dict:
    """Does the autoencoder keep every finding? Per class: the oracle's positive rate on the
    clean images and on their round trips, for real positives and real negatives; ``ok`` when
    rt_pos >= 0.8 x clean_pos and rt_neg <= max(1.5 x clean_neg, clean_neg + 0.01). With
    ``fid_weights`` (the oracle file) also the FID (oracle features, torch-fidelity) of the
    positives' round trips against the positives themselves."""
    from ltbench.eval.fid import fid

    rt = round_trip(prior, images)
    clean, back = oracle.positive(images), oracle.positive(rt)
    out = {}
    for k, c in enumerate(classes):
        pos = labels[:, k] == 1
        r = {
            "n_pos": int(pos.sum()),
            "n_neg": int((~pos).sum()),
            "clean_pos": float(clean[pos, k].mean()),
            "rt_pos": float(back[pos, k].mean()),
            "clean_neg": float(clean[~pos, k].mean()),
            "rt_neg": float(back[~pos, k].mean()),
        }
        r["keeps"] = r["rt_pos"] >= RT_POSITIVE_KEEP * r["clean_pos"]
        r["invents_not"] = r["rt_neg"] <= max(RT_NEGATIVE_INVENT * r["clean_neg"], r["clean_neg"] + RT_NEGATIVE_SLACK)
        r["ok"] = r["keeps"] and r["invents_not"]
        if fid_weights is not None and pos.sum() >= 2:
            r["fid"] = fid(images[pos], rt[pos], weights=fid_weights)
        out[c] = r
    return out
