"""Intervals and tests over seeds: what a Table 1 cell's number and a row's difference from a
baseline are read with.

* ``mean_interval``: mean and a two-sided Student-t interval over seeds (one seed: the value,
  no interval).
* ``paired_difference``: row - baseline over the seeds both have (within a seed they share the
  classifier's initialisation and real-data order), with a paired t-interval and the paired
  t-test's two-sided p-value.
* ``holm``: Holm's step-down familywise correction of a family of p-values.
* ``probability_of_improvement``: P(X > Y) over seeds, the Mann-Whitney form rliable reports
  (Agarwal et al. 2021).
"""

import math

import numpy as np


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean and two-sided Student-t interval over seeds: {"mean", "lo", "hi", "n"}; with one
    value lo = hi = None (no interval is invented)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(v.mean())
    if len(v) < 2:
        return {"mean": m, "lo": None, "hi": None, "n": 1}
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(len(v))}


def _common(values: dict, baseline: dict) -> list:
    return sorted(s for s in values if s in baseline and values[s] is not None and baseline[s] is not None)


def paired_difference(values: dict, baseline: dict, level: float = 0.95) -> dict:
    """{seed: value} of a row and of its baseline -> mean of (row - baseline) over the seeds both
    have with a paired Student-t interval and the paired t-test's two-sided p-value:
    {"mean", "lo", "hi", "n", "half_width", "p"} (p None below two seeds; p = 0 when every
    difference is equal and non-zero, 1 when all are zero)."""
    from scipy import stats

    seeds = _common(values, baseline)
    d = np.asarray([values[s] - baseline[s] for s in seeds], np.float64)
    out = mean_interval(d, level)
    out["half_width"] = None if out["lo"] is None else (out["hi"] - out["lo"]) / 2
    if len(d) < 2:
        out["p"] = None
    elif d.std(ddof=1) == 0:
        out["p"] = 1.0 if d.mean() == 0 else 0.0
    else:
        t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        out["p"] = float(2 * stats.t.sf(abs(t), len(d) - 1))
    return out


def paired_interval(values: dict, baseline: dict, level: float = 0.95) -> dict:
    """``paired_difference`` without the p-value (the interval a cell reports)."""
    out = paired_difference(values, baseline, level)
    out.pop("p")
    return out


def holm(pvalues: dict) -> dict:
    """Holm's step-down adjustment (Holm 1979) of a family {name: p} (None: not tested, left
    out of the family). With the m tested p-values sorted, p_(1) <= ... <= p_(m), the adjusted
    p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); a comparison survives at familywise level
    alpha where its adjusted p <= alpha. Returns {name: adjusted p or None}."""
    tested = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda t: (t[0], str(t[1])))
    m, out, running = len(tested), {k: None for k in pvalues}, 0.0
    for j, (p, k) in enumerate(tested):
        running = max(running, min(1.0, (m - j) * p))
        out[k] = running
    return out


def probability_of_improvement(x: dict, y: dict, higher_is_better: bool = True) -> float | None:
    """P(X > Y): the share of (seed i of X, seed j of Y) pairs where X's value beats Y's, ties
    counting one half (the Mann-Whitney U statistic over n_x n_y, as rliable computes it). None
    when either has no value."""
    a = np.asarray([v for v in x.values() if v is not None], np.float64)
    b = np.asarray([v for v in y.values() if v is not None], np.float64)
    if len(a) == 0 or len(b) == 0:
        return None
    if not higher_is_better:
        a, b = -a, -b
    diff = a[:, None] - b[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


__all__ = ["holm", "mean_interval", "paired_difference", "paired_interval", "probability_of_improvement"]
