"""The room-to-help rule, shared by Table 1's readings and the classifier's calibration.

A generator can only help a classifier that sees a finding a little but not fully: over the
seeds, the `none` classifier's average precision on a tail class must be resolved above the
class's prevalence (what a classifier that cannot see the finding scores) and below the oracle's
AP on the same images (the ceiling).

"Resolved" is a 95% Student-t interval over seeds, taken on the logit scale and mapped back.
An AP lies in (0, 1), and on a rare class its seed-to-seed spread is skewed: one seed far
above the others (Pneumomediastinum's `none` APs 0.060, 0.096, 0.037, 0.385 on the phantom)
stretches a t-interval on the AP scale below zero, an interval no AP can have, and would read a
class that every seed sees at 12-130 times chance as "at chance". On the logit scale the
interval stays inside (0, 1) and an outlying seed widens it on its own side. The interval on
the AP scale is kept beside it in every record, for reference.
"""

from __future__ import annotations

import math

import numpy as np

#: APs are clipped to [EPS, 1 - EPS] before the logit (an AP of exactly 0 or 1 has none)
EPS = 1e-6


def logit_interval(values, level: float = 0.95) -> dict:
    """Mean of the values and a two-sided Student-t interval over them on the logit scale,
    mapped back to (0, 1): {"mean", "lo", "hi", "n"} (the mean is the plain mean; lo = hi =
    None below two values: no interval is invented)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    if not np.all(np.isfinite(v)) or np.any((v < 0) | (v > 1)):
        raise ValueError(f"average precisions must lie in [0, 1], got {v.tolist()}")
    m = float(v.mean())
    if len(v) < 2:
        return {"mean": m, "lo": None, "hi": None, "n": 1}
    z = np.log(np.clip(v, EPS, 1 - EPS)) - np.log1p(-np.clip(v, EPS, 1 - EPS))
    half = float(stats.t.ppf(0.5 + level / 2, len(z) - 1) * z.std(ddof=1) / math.sqrt(len(z)))
    lo, hi = (float(1.0 / (1.0 + math.exp(-x))) for x in (float(z.mean()) - half, float(z.mean()) + half))
    # a bound at the clip is the edge itself: every seed at AP 1 is at a ceiling of 1, not below it
    return {"mean": m, "lo": 0.0 if lo <= 2 * EPS else lo, "hi": 1.0 if hi >= 1 - 2 * EPS else hi, "n": int(len(v))}


def room(values, chance: float | None, ceiling: float) -> dict:
    """The rule on one class: {"interval", "above_chance", "below_ceiling", "room"}. With one
    value the value itself is compared; with an unknown chance (None) the verdicts that need
    it are None (unknown), never a guess."""
    iv = logit_interval(values)
    lo = iv["lo"] if iv["lo"] is not None else iv["mean"]
    hi = iv["hi"] if iv["hi"] is not None else iv["mean"]
    above = None if chance is None or lo is None else bool(lo > chance)
    below = None if hi is None else bool(hi < ceiling)
    verdict = None if above is None or below is None else bool(above and below)
    return {"interval": {k: iv[k] for k in ("lo", "hi", "n")}, "above_chance": above, "below_ceiling": below, "room": verdict}


__all__ = ["EPS", "logit_interval", "room"]
