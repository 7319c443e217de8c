"""Memorisation: does a row's generated tail image sit closer to the real train images than
a new real image of its class would?

A distribution metric cannot tell a copy from a new sample (random oversampling scores the
best tail FID there is). For every query image, its distance to the NEAREST real train image
(all of train, every class) is measured in two spaces:

* ``pixel``: the Euclidean (L2) distance between the images on [0, 1] (uint8 / 255), over
  all H x W pixels;
* ``feature``: the Euclidean distance between the vectors a feature function gives (on the
  phantom, the oracle's penultimate layer, ``Oracle.features``).

The queries are the images generated for tail class c and, as the reference of what "new"
means, held-out real images of c that were never in train. CheXGenBench's nearest-neighbour
check and the data-copying test of Meehan, Chaudhuri and Dasgupta (AISTATS 2020) compare the
same two distributions.

Per class and space (``memorisation``): the median nearest-train distance of the generated
and of the held-out images; ``near_copy_share``, the share of generated images closer to
train than the 5th percentile of the held-out distances (a generator whose samples are as
new as held-out images has ~5% there); ``p_closer``, the probability that a generated image is
closer to train than a held-out one (ties count one half; 0.5 for held-out-like samples).

The flag rule: for each tail class with at least ``min_heldout`` held-out images, and each
space, the one-sided Mann-Whitney U test (scipy) of "the generated distances are
stochastically smaller than the held-out ones"; the p-values of a row's classes and spaces
form one family, corrected by Holm (``ltbench.eval.stats.holm``). A class is flagged where
any of its spaces has a Holm-adjusted p <= ``alpha`` (0.05); the row is flagged where any
class is. A class with too few held-out images is untested (flag None).

Memory is bounded by the queries (kept as the uint8 images they are) and one chunk of train:
train is read ``chunk_size`` rows at a time (an array, a Tensor, or a row source with
``len`` and slices such as ``ltbench.data.rows.RowFile``), once for both spaces. The
candidate neighbour of each chunk is chosen by ``|q|^2 + |t|^2 - 2 q.t`` in float32 and its
distance then recomputed from ``q - t`` (no cancellation: an exact copy is at exactly 0).
"""

import numpy as np
import torch

PIXEL, FEATURE = "pixel", "feature"
NEAR_COPY_PERCENTILE = 5.0  # of the held-out distances: the near-copy threshold

RULE = (
    "per tail class with >= min_heldout held-out images and per space (pixel, feature): one-sided Mann-Whitney U test, "
    "generated nearest-train distances stochastically smaller than held-out ones; Holm over the row's classes x spaces; "
    "a class is flagged where any space has Holm-adjusted p <= alpha, the row where any class is"
)


def _images(x, what: str):
    """A uint8 [N, H, W] / [N, 1, H, W] image set: a Tensor, an array or a row source
    (returned lazy). Returns (source, (H, W))."""
    from ltbench.data.rows import is_row_source

    if not is_row_source(x):
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    shape = tuple(x.shape)
    uint8 = x.dtype == torch.uint8 if isinstance(x, torch.Tensor) else np.dtype(x.dtype) == np.uint8
    if not uint8:
        raise ValueError(f"{what} must be uint8 images, got {x.dtype}")
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[1] != 1):
        raise ValueError(f"{what} must be grayscale [N, H, W] or [N, 1, H, W], got {shape}")
    return x, shape[-2:]


def _read(x, a: int, b: int) -> torch.Tensor:
    """Rows a:b as a uint8 Tensor[b - a, H, W] on the CPU."""
    rows = x[a:b]
    rows = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(rows))
    return rows.reshape(len(rows), *rows.shape[-2:])


def _features(fn, images: torch.Tensor, device) -> torch.Tensor:
    out = torch.as_tensor(fn(images)).float().to(device)
    if out.ndim != 2 or len(out) != len(images) or not torch.isfinite(out).all():
        raise ValueError(f"features must map {len(images)} images to finite [{len(images)}, F], got {tuple(out.shape)}")
    return out


def _update(best, index, q, t, t_sq, start: int) -> None:
    """Keep in ``best``/``index`` (float64[Q], int64[Q]) the nearer of the current neighbour
    and the nearest of chunk ``t`` (float32[C, D], rows ``start``...) for queries q float32[Q, D]."""
    d2 = (q * q).sum(1, keepdim=True) + t_sq[None] - 2 * (q @ t.T)  # [Q, C], only to pick a candidate
    j = d2.argmin(1)
    exact = ((q - t[j]) ** 2).sum(1, dtype=torch.float64).sqrt()
    better = exact < best
    best.copy_(torch.where(better, exact, best))
    index.copy_(torch.where(better, j + start, index))


def nearest_train(queries, train, features=None, chunk_size: int = 256, query_chunk: int = 256, device: str = "cpu", progress: bool = False, train_features=None) -> dict:
    """Each query image's distance to its nearest train image. ``queries``: uint8 [M, H, W]
    (or a list of such sets, taken in order as one); ``train``: uint8 [N, H, W] (array, Tensor
    or row source, read ``chunk_size`` rows at a time); ``features``: None or a function
    uint8 Tensor[B, H, W] (CPU) -> Tensor[B, F]. Returns numpy arrays {"pixel": float64[M]
    (L2 on [0, 1] images), "pixel_index": int64[M] (the train row)} and, with ``features``,
    "feature" and "feature_index" likewise. ``train_features`` (Tensor[N, F], optional): the
    train images' features computed once beforehand (a run comparing many rows with one train
    split), used instead of ``features`` on the train chunks."""
    if chunk_size < 1 or query_chunk < 1:
        raise ValueError(f"chunk_size and query_chunk must be >= 1, got {chunk_size} and {query_chunk}")
    from tqdm.auto import tqdm

    train, size = _images(train, "train images")
    sets = []
    for i, q in enumerate(queries if isinstance(queries, (list, tuple)) else [queries]):
        q, s = _images(q, f"query set {i}")
        if s != size:
            raise ValueError(f"query set {i} is {s[0]}x{s[1]} px but the train images are {size[0]}x{size[1]} px")
        sets.append(_read(q, 0, len(q)))
    if len(train) == 0:
        raise ValueError("no train images to compare with")
    if train_features is not None and (features is None or len(train_features) != len(train)):
        raise ValueError(f"train_features must come with the features function and hold one row per train image ({len(train)}), got {None if train_features is None else len(train_features)}")
    m = sum(len(q) for q in sets)
    # query blocks (set k, its rows a:b, their offset in the queries taken as one), never concatenated
    blocks, off = [], 0
    for k, q in enumerate(sets):
        blocks += [(k, a, min(a + query_chunk, len(q)), off + a) for a in range(0, len(q), query_chunk)]
        off += len(q)
    spaces = [PIXEL] + ([FEATURE] if features is not None else [])
    best = {s: torch.full((m,), float("inf"), dtype=torch.float64, device=device) for s in spaces}
    index = {s: torch.full((m,), -1, dtype=torch.long, device=device) for s in spaces}
    q_pix = [q.reshape(len(q), size[0] * size[1]).to(device) for q in sets]  # uint8: converted a block at a time (a set may be empty)
    q_feat = torch.cat([_features(features, q, device) for q in sets if len(q)]) if features is not None and m else None
    for a in tqdm(range(0, len(train), chunk_size), desc="nearest train", unit="chunk", disable=not progress, leave=False):
        raw = _read(train, a, min(a + chunk_size, len(train)))
        t = raw.reshape(len(raw), -1).to(device).float() / 255
        chunk = {PIXEL: (t, (t * t).sum(1))}
        if features is not None:
            tf = torch.as_tensor(train_features[a : a + len(raw)]).float().to(device) if train_features is not None else _features(features, raw, device)
            chunk[FEATURE] = (tf, (tf * tf).sum(1))
        for k, i, j, o in blocks:
            sl = slice(o, o + j - i)
            _update(best[PIXEL][sl], index[PIXEL][sl], q_pix[k][i:j].float() / 255, *chunk[PIXEL], a)
            if features is not None:
                _update(best[FEATURE][sl], index[FEATURE][sl], q_feat[sl], *chunk[FEATURE], a)
    out = {}
    for s in spaces:
        out[s], out[f"{s}_index"] = best[s].cpu().numpy(), index[s].cpu().numpy()
    return out


def _compare(g: np.ndarray, h: np.ndarray, min_heldout: int) -> dict:
    """The generated (g) vs held-out (h) nearest-train distances of one class and space."""
    from scipy.stats import mannwhitneyu

    out = {"generated_median": float(np.median(g)), "heldout_median": float(np.median(h)) if len(h) else None}
    if len(h) < min_heldout:
        return {**out, "near_copy_threshold": None, "near_copy_share": None, "heldout_near_copy_share": None, "p_closer": None, "p_value": None}
    threshold = float(np.percentile(h, NEAR_COPY_PERCENTILE))
    diff = g[:, None] - h[None, :]
    return {
        **out,
        "near_copy_threshold": threshold,
        "near_copy_share": float((g < threshold).mean()),
        "heldout_near_copy_share": float((h < threshold).mean()),
        "p_closer": float(((diff < 0) + 0.5 * (diff == 0)).mean()),
        "p_value": float(mannwhitneyu(g, h, alternative="less").pvalue),
    }


def memorisation(generated: dict, heldout: dict, train, features=None, alpha: float = 0.05, min_heldout: int = 5, chunk_size: int = 256, query_chunk: int = 256, device: str = "cpu", progress: bool = False, train_features=None) -> dict:
    """Nearest-train distances of the images generated for each tail class (``generated``:
    {class: uint8 [M_c, H, W]}) beside those of held-out real images of the class
    (``heldout``: {class: uint8 [n_c, H, W]}, never in train), against ``train`` (uint8
    [N, H, W], any row source), in pixels and, with ``features`` (uint8 Tensor[B, H, W] ->
    Tensor[B, F]), in that feature space; the flag rule is the module's (``RULE``).

    Returns {"rule", "alpha", "min_heldout", "spaces",
    "per_class": {c: None (no generated image) or {"n_generated", "n_heldout",
    "heldout_in_train" (held-out images at pixel distance 0 from a train image: a leak),
    space: {"generated_median", "heldout_median", "near_copy_threshold", "near_copy_share",
    "heldout_near_copy_share", "p_closer", "p_value", "p_holm", "flag"}, "flag"}},
    "overall": {"n_generated", "n_heldout", space: {"generated_median", "heldout_median",
    "near_copy_share" (pooled over classes, each against its own threshold)}, "flag",
    "flagged_classes"}}. Flags are None where nothing could be tested. ``train_features``: see
    ``nearest_train``."""
    from ltbench.eval.stats import holm

    missing = [c for c in generated if c not in heldout]
    if missing:
        raise ValueError(f"no held-out images given for {missing} (pass an empty set to leave a class untested)")
    if not 0 < alpha < 1 or min_heldout < 2:
        raise ValueError(f"alpha must be in (0, 1) and min_heldout >= 2, got {alpha} and {min_heldout}")
    classes = [c for c in generated if len(generated[c])]
    sets = [generated[c] for c in classes] + [heldout[c] for c in classes]
    d = nearest_train(sets, train, features, chunk_size, query_chunk, device, progress, train_features=train_features)
    spaces = [PIXEL] + ([FEATURE] if features is not None else [])
    sizes = [len(s) for s in sets]
    cuts = np.cumsum([0] + sizes)
    part = lambda s, k: d[s][cuts[k] : cuts[k + 1]]  # noqa: E731 - set k's distances in space s
    n = len(classes)
    per_class = {c: None for c in generated}
    for k, c in enumerate(classes):
        per_class[c] = {"n_generated": sizes[k], "n_heldout": sizes[n + k], "heldout_in_train": int((part(PIXEL, n + k) == 0).sum())}
        for s in spaces:
            per_class[c][s] = _compare(part(s, k), part(s, n + k), min_heldout)
    adjusted = holm({(c, s): per_class[c][s]["p_value"] for c in classes for s in spaces})
    for c in classes:
        for s in spaces:
            p = adjusted[(c, s)]
            per_class[c][s]["p_holm"] = p
            per_class[c][s]["flag"] = None if p is None else bool(p <= alpha)
        tested = [per_class[c][s]["flag"] for s in spaces if per_class[c][s]["flag"] is not None]
        per_class[c]["flag"] = any(tested) if tested else None
    overall = {"n_generated": int(sum(sizes[:n])), "n_heldout": int(sum(sizes[n:]))}
    for s in spaces:
        g = np.concatenate([part(s, k) for k in range(n)]) if n else np.zeros(0)
        h = np.concatenate([part(s, n + k) for k in range(n)]) if n else np.zeros(0)
        counted = [(per_class[c][s]["near_copy_share"], sizes[k]) for k, c in enumerate(classes) if per_class[c][s]["near_copy_share"] is not None]
        overall[s] = {
            "generated_median": float(np.median(g)) if len(g) else None,
            "heldout_median": float(np.median(h)) if len(h) else None,
            "near_copy_share": float(sum(v * m for v, m in counted) / sum(m for _, m in counted)) if counted else None,
        }
    flags = {c: per_class[c]["flag"] for c in classes}
    overall["flagged_classes"] = [c for c in classes if flags[c]]
    overall["flag"] = None if all(f is None for f in flags.values()) else bool(overall["flagged_classes"])
    return {"rule": RULE, "alpha": alpha, "min_heldout": min_heldout, "spaces": spaces, "per_class": per_class, "overall": overall}


__all__ = ["FEATURE", "NEAR_COPY_PERCENTILE", "PIXEL", "RULE", "memorisation", "nearest_train"]
