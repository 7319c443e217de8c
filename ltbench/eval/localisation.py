"""Localisation of the method's class-specific mask M^S against ground-truth finding masks.

fsa-il takes the tail example's code where its class activation map is high, M^S = [CAM >
tau_h] (Eq. 6), on the premise that the CAM finds the finding. Where the finding's true mask
is known (the phantom), the premise can be measured per image:

* ``finding_in_ms``: the share of the finding's mask (area-averaged onto the latent grid) that
  lies inside M^S (recall);
* ``ms_on_finding``: the share of M^S that lies on the finding (precision);
* each beside its expectation for a random mask of M^S's area (M^S's area fraction for
  recall, the finding's area fraction for precision): the floor a CAM has to beat.
"""

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
    from ltbench.eval.stats import mean_interval

    out = {key: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for key, v in loc.items()}
    for key in ("finding_in_ms", "ms_on_finding"):
        d = loc[key] - loc[f"random_{key}"]
        iv = mean_interval(d[np.isfinite(d)])
        out[f"{key}_minus_random"] = {"mean": iv["mean"], "lo": iv["lo"], "hi": iv["hi"]}
    return out


def localise(cams: np.ndarray, tau_h: float, masks: np.ndarray) -> dict:
    """The summary of how M^S = [cams > tau_h] (float[N, h, w]) localises the findings whose
    pixel masks are ``masks`` bool[N, S, S]."""
    cams = np.asarray(cams, np.float32)
    return summarise(localisation(cams > tau_h, grid_fraction(np.asarray(masks, bool), cams.shape[1:])))


__all__ = ["grid_fraction", "localisation", "localise", "summarise"]
