"""Paired bootstrap intervals for differences between sets of generated samples.

Several "points" (e.g. the same fusions refined with k = 0, 5, 15 steps) hold, for each tail
class c, the oracle features and the oracle's call of m_c samples, where row i is the SAME
sample at every point (its own seed: the same tail example, partner and masks). A contrast is
a linear combination of points, e.g. @5 - @0, or (@5 - @0 under one decoder) - (@5 - @0 under
another). Each bootstrap replicate draws, per class, one resample of the sample indices shared
by every point (the pairing) and one resample of the real reference images; it recomputes each
point's FID (torch-fidelity's statistics and distance on the resampled features) and label
fidelity, averages over classes as Table 1 does, and evaluates every contrast. The interval is
the percentile interval of the replicates; the estimate is the contrast on the full samples.

Resampling with replacement repeats samples, which biases FID upward by a similar amount at
every point; a contrast of points with the same sample count carries little of it. The interval
covers the sampling of fusions and reference images given one fit (one IL model, one prior); it
says nothing of the variation between fits.
"""

import numpy as np
import torch


def _fid(fake: np.ndarray, real: np.ndarray) -> float:
    """torch-fidelity's FID between two feature sets (its statistics and distance)."""
    from ltbench.eval.fid import fid_from_features

    return fid_from_features(torch.from_numpy(real), torch.from_numpy(fake))


def _real_stats(real: np.ndarray) -> tuple:
    sigma = np.cov(real, rowvar=False)
    return real.mean(0), sigma, float(np.trace(sigma))


def fid_gram(fake: np.ndarray, real_stats: tuple) -> float:
    """The same Frechet distance as torch-fidelity's ``fid_statistics_to_metric`` (which takes
    the eigenvalues of sigma_fake @ sigma_real, D x D, non-symmetric), from the m x m
    symmetric matrix X sigma_real X^T / (m - 1), X the centred fake features: AB and BA share
    their non-zero eigenvalues, so tr sqrt(sigma_fake sigma_real) is the sum of the square roots
    of its eigenvalues. Used for the bootstrap replicates (hundreds of FIDs per replicate);
    ``tests/test_bootstrap.py`` holds it to torch-fidelity's value."""
    mu_r, sigma_r, tr_r = real_stats
    m = len(fake)
    mu_f = fake.mean(0)
    x = fake - mu_f
    gram = x @ sigma_r @ x.T / (m - 1)
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0, None)).sum())
    d = mu_f - mu_r
    return float(d @ d + (x * x).sum() / (m - 1) + tr_r - 2 * tr_covmean)


def _check(real: dict, fake: dict, positive: dict, contrasts: dict) -> list:
    if not real:
        raise ValueError("paired bootstrap: no classes")
    classes = list(real)
    for pt, by_class in fake.items():
        if set(by_class) != set(classes) or set(positive.get(pt, {})) != set(classes):
            raise ValueError(f"paired bootstrap: point {pt!r} must hold features and oracle calls for every class {classes}")
    for c in classes:
        sizes = {pt: len(fake[pt][c]) for pt in fake} | {f"{pt} (oracle calls)": len(positive[pt][c]) for pt in fake}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"paired bootstrap: class {c!r} has different sample counts across points {sizes}: points must hold the same samples")
        if min(sizes.values()) < 2 or len(real[c]) < 2:
            raise ValueError(f"paired bootstrap: class {c!r} needs at least 2 generated and 2 real samples")
    for name, terms in contrasts.items():
        for _, pt in terms:
            if pt not in fake:
                raise ValueError(f"contrast {name!r} names an unknown point {pt!r}")
    return classes


def paired_bootstrap(real: dict, fake: dict, positive: dict, contrasts: dict, n_boot: int = 1000, seed: int = 0, level: float = 0.95, progress: bool = False) -> dict:
    """``real``: {class: features [n_c, D]} (the reference); ``fake``: {point: {class: features
    [m_c, D]}}; ``positive``: {point: {class: bool [m_c]}} (the oracle calls the sample
    positive for the class it was made for); ``contrasts``: {name: [(weight, point), ...]}.

    Returns {"points": {point: {"fid", "label_fidelity"}} (class means on the full samples),
    "contrasts": {name: {"fid": {"estimate", "low", "high"}, "label_fidelity": {...}}},
    "n_boot", "level", "seed"}."""
    from tqdm.auto import tqdm

    classes = _check(real, fake, positive, contrasts)
    real = {c: np.asarray(real[c], np.float64) for c in classes}
    fake = {pt: {c: np.asarray(v[c], np.float64) for c in classes} for pt, v in fake.items()}
    positive = {pt: {c: np.asarray(v[c], bool) for c in classes} for pt, v in positive.items()}
    points = list(fake)

    def values(gen_idx, real_idx):
        fid, lf = {}, {}
        rstats = {c: _real_stats(real[c][real_idx[c]]) for c in classes}
        for pt in points:
            f = [fid_gram(fake[pt][c][gen_idx[c]], rstats[c]) for c in classes]
            p = [positive[pt][c][gen_idx[c]].mean() for c in classes]
            fid[pt], lf[pt] = float(np.mean(f)), float(np.mean(p))
        return fid, lf

    def combine(vals, terms):
        return float(sum(w * vals[pt] for w, pt in terms))

    fid0 = {pt: float(np.mean([_fid(fake[pt][c], real[c]) for c in classes])) for pt in points}
    lf0 = {pt: float(np.mean([positive[pt][c].mean() for c in classes])) for pt in points}
    rng = np.random.default_rng(seed)
    reps = {name: {"fid": np.empty(n_boot), "label_fidelity": np.empty(n_boot)} for name in contrasts}
    for b in tqdm(range(n_boot), desc="paired bootstrap", disable=not progress):
        gen_idx = {c: rng.integers(len(positive[points[0]][c]), size=len(positive[points[0]][c])) for c in classes}
        real_idx = {c: rng.integers(len(real[c]), size=len(real[c])) for c in classes}
        fid, lf = values(gen_idx, real_idx)
        for name, terms in contrasts.items():
            reps[name]["fid"][b] = combine(fid, terms)
            reps[name]["label_fidelity"][b] = combine(lf, terms)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out = {}
    for name, terms in contrasts.items():
        out[name] = {}
        for metric, full in (("fid", fid0), ("label_fidelity", lf0)):
            lo, hi = np.percentile(reps[name][metric], q)
            out[name][metric] = {"estimate": combine(full, terms), "low": float(lo), "high": float(hi)}
    return {"points": {pt: {"fid": fid0[pt], "label_fidelity": lf0[pt]} for pt in points}, "contrasts": out, "n_boot": n_boot, "level": level, "seed": seed}
