"""Label fidelity (beyond the paper): does a generated sample still show what it is labelled
with? Judged by the phantom's oracle, which was trained on far more real data than the
benchmark's classifier ever sees."""

import numpy as np


def label_fidelity(oracle, images, labels, classes, tail, targets=None) -> dict:
    """``images`` uint8 [N, H, W] (or float in [0, 1]), ``labels`` 0/1 [N, K] over ``classes``.
    For each tail class c, over the samples generated FOR c (``targets`` int[N], the class
    index each sample was made for; None: every sample labelled c): ``tail`` = fraction the
    oracle calls positive for c (its per-class threshold, fixed on clean real images);
    ``other`` = fraction of their OTHER positive labels the oracle also calls (None when they
    carry none). ``mean_tail`` averages ``tail`` over classes with samples. Read it against
    the ``real`` and ``vae`` rows: real images of c score the oracle's sensitivity."""
    labels = np.asarray(labels)
    n = len(images)
    if labels.ndim != 2 or labels.shape != (n, len(classes)):
        raise ValueError(f"label_fidelity: labels must be [N, K] = [{n}, {len(classes)}] (one row per image, one column per class), got shape {labels.shape}")
    if targets is not None and np.shape(targets) != (n,):
        raise ValueError(f"label_fidelity: targets must be one class index per image, shape ({n},), got {np.shape(targets)}")
    unknown = [c for c in tail if c not in classes]
    if unknown:
        raise ValueError(f"label_fidelity: tail classes {unknown} are not among the classes {list(classes)}")
    per = {}
    if len(labels):
        p = oracle.positive(images)
    for c in tail:
        k = classes.index(c)
        if targets is not None:
            sel = np.flatnonzero(np.asarray(targets) == k)
        else:
            sel = np.flatnonzero(labels[:, k] == 1) if len(labels) else np.zeros(0, int)
        if len(sel) == 0:
            per[c] = {"n": 0, "tail": None, "other": None}
            continue
        other = labels[sel].astype(bool).copy()
        other[:, k] = False
        per[c] = {
            "n": int(len(sel)),
            "tail": float(p[sel, k].mean()),
            "other": float(p[sel][other].mean()) if other.any() else None,
        }
    vals = [v["tail"] for v in per.values() if v["tail"] is not None]
    return {"per_class": per, "mean_tail": float(np.mean(vals)) if vals else None}
