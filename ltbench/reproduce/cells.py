"""One Table 1 cell, (row, seed): generate ``n_per_class`` samples per tail class with the
row's augmenter (through the registry), turn them into images (latent rows are decoded by the
prior's VAE), then measure tail FID/KID/precision/recall per feature space, label fidelity
(oracle), the cost, and the head/tail mAP of the classifier trained on train + generated
images. The samples are cached under ``work/generated`` (a rerun of the classifier alone does
not regenerate them). A cell evaluates; the runner (``table1``) writes it and draws figures."""

import json
import os
import time

import numpy as np
import torch

from ltbench.reproduce.rows import parse_row
from ltbench.reproduce.schema import SCHEMA, cell_key
from ltbench.reproduce.stages import Context, cached, stamp, state_digest
from ltbench.utils.io import atomic_path
from ltbench.utils.provenance import metadata


def _no_samples(ctx: Context) -> tuple:
    return np.zeros((0, *ctx.x_train.shape[1:]), np.uint8), np.zeros((0, len(ctx.classes)), np.uint8), np.zeros(0, np.int64)


def generate_cell(ctx: Context, row: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Run the row's augmenter; returns (images uint8 [M, H, W], labels uint8 [M, K], targets
    int[M] = the tail class index each sample was made for, cost). Every augmenter makes
    ``n_per_class`` samples per tail class, in ``tail`` order (the contract)."""
    from ltbench.augment import make_augmenter

    p, spec = ctx.preset, parse_row(row)
    if spec["method"] in ("real", "vae"):
        images, labels, targets = ctx.heldout(seed)
        t = time.perf_counter()
        if spec["method"] == "vae":
            from ltbench.eval.roundtrip import round_trip

            images = round_trip(ctx.prior, images, batch_size=ctx.vae_batch)
        seconds = time.perf_counter() - t
        cost = {"n_generated": len(images), "fit_seconds": 0.0, "generate_seconds": round(seconds, 3), "samples_per_s": round(len(images) / seconds, 3) if spec["method"] == "vae" and seconds > 0 else None, "unet_evals_per_sample": 0.0, "space": "pixel"}
        cost["seconds_to_n_per_class"] = cost["generate_seconds"]
        return images, labels.astype(np.uint8), targets, cost
    if spec["method"] == "none":  # nothing to generate: the train images are not read
        cost = {"n_generated": 0, "fit_seconds": 0.0, "generate_seconds": 0.0, "samples_per_s": None, "unet_evals_per_sample": None, "seconds_to_n_per_class": 0.0, "space": spec["space"]}
        return (*_no_samples(ctx), cost)
    base = dict(classes=ctx.classes, head=ctx.head, tail=ctx.tail, n_per_class=p.n_per_class, seed=seed)
    if spec["method"] == "fsa-il":
        fusion = p.row_fusion(row, seed)
        oracle = None
        if fusion.label_policy == "oracle":
            if ctx.oracle is None:
                raise ValueError(f"row {row} needs an oracle")
            oracle = lambda z: ctx.oracle.positive(ctx.prior.decode_uint8(z)).astype(np.float32)  # noqa: E731
        aug = make_augmenter("fsa-il", classes=ctx.classes, head=ctx.head, tail=ctx.tail, fusion=fusion, prior=ctx.prior, oracle=oracle, fitted=ctx.il_fit(seed), device=p.device)
    elif spec["method"] == "t2i":
        aug = make_augmenter("t2i", prior=ctx.prior, steps=p.t2i_steps, guidance=p.t2i_guidance, **base)
    else:
        aug = make_augmenter(spec["method"], **base)
    # pixel-space baselines (oversample, smote-pixel) work on the whole train matrix: they hold it
    X = ctx.latents() if spec["space"] == "latent" else torch.from_numpy(np.asarray(ctx.x_train)).float().div(255)[:, None]
    t = time.perf_counter()
    with ctx.prior.count_unet() as cnt:
        X_new, y_new = aug.fit_generate(X, ctx.y_train)
    if not len(X_new):
        images = _no_samples(ctx)[0]
    elif spec["space"] == "latent":
        images = ctx.prior.decode_uint8(X_new, ctx.vae_batch)
    else:
        from ltbench.data.images import to_uint8_gray

        images = to_uint8_gray(X_new)
    seconds = time.perf_counter() - t
    n = len(images)
    if n and n != p.n_per_class * len(ctx.tail):
        raise AssertionError(f"{row} made {n} samples; the augmenter contract is n_per_class = {p.n_per_class} per tail class, in tail order")
    targets = np.repeat([ctx.classes.index(c) for c in ctx.tail], p.n_per_class) if n else np.zeros(0, np.int64)
    # one-off fit: the shared IL fit + CAMs for fsa-il (SMOTE's neighbour search runs inside
    # its generation call, so it is in generate_seconds)
    fit = float(ctx.il_fit_seconds.get(seed, 0.0)) if spec["method"] == "fsa-il" else 0.0
    cost = {
        "n_generated": n,
        "fit_seconds": round(fit, 3),
        "generate_seconds": round(seconds, 3),
        "samples_per_s": round(n / seconds, 3) if n else None,
        "unet_evals_per_sample": round(cnt.rows / n, 2) if n else None,
        "seconds_to_n_per_class": round(fit + seconds, 3),
        "space": spec["space"],
    }
    if spec["method"] == "fsa-il":
        loc = cell_localisation(ctx, aug, seed)
        if loc is not None:
            cost["localisation"] = loc  # cached with the samples; moved to the results by evaluate_cell
    return images, y_new.astype(np.uint8), targets, cost


def cell_localisation(ctx: Context, aug, seed: int) -> dict | None:
    """How well the M^S this fsa-il cell fused with covered the finding, on the phantom's ground
    truth: per tail class, over the distinct tail examples it took (``aug.partners_``), the
    summary of ``ltbench.eval.localisation.localise``. None on data without masks, and for the
    random-mask control (its M^S is random by design)."""
    from ltbench.data.phantom import split_masks
    from ltbench.eval.localisation import localise

    if ctx.preset.data_root is not None or aug.fusion.masks != "cam":
        return None
    _, cams, _ = ctx.il_fit(seed)
    out = {}
    for c in ctx.tail:
        k = ctx.classes.index(c)
        rows = np.unique(aug.partners_[aug.partners_[:, 3] == k, 0])  # the distinct tail examples fused for c
        out[c] = {"examples": int(len(rows)), **localise(cams[rows], aug.thresholds_[0], split_masks(ctx.preset.phantom, "train", rows, k))}
    return out


def fit_names(ctx: Context, row: str, seed: int) -> dict:
    """What a cell's numbers were drawn from, beyond the config: the seed's own draws of the FID
    reference and of the held-out floor, and for fsa-il rows the seed's generator fit (its
    stamp and the digest of its weights) with the re-check of the CAM choice on it. The
    caller adds ``warm_start``, the digest of the classifier's starting weights."""
    p = ctx.preset
    out = {"seed": seed, "fid_reference_seed": p.fid_reference_seed + seed, "heldout_seed": p.heldout_seed + seed}
    if parse_row(row)["method"] == "fsa-il":
        check = ctx.cam_check(seed)
        model = ctx.il_fit(seed)[0]  # its CAMs follow from it and the data (not hashed: N x grid floats at scale)
        out["il"] = {"seed": p.il_for(seed).seed, "stamp": stamp(ctx.il_fit_identity(seed)), "weights": state_digest(model.state_dict())}
        out["cam_check"] = None if check is None else {k: check[k] for k in ("best", "default", "default_is_best", "images_per_class")}
    return out


def samples(ctx: Context, row: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The cell's generated samples, from the cache in ``work/generated`` when it holds them.
    A ``ROW+METHOD`` row trains on ROW's own samples of the seed (the same draw: its difference
    from ROW is the training method's alone)."""
    from ltbench.utils.lock import FileLock

    base = parse_row(row)["base"]
    path = os.path.join(ctx.work, "generated", cell_key(base, seed) + ".npz")
    want = stamp({k: v for k, v in ctx.cell_config(base, seed).items() if k != "classifier"})  # the samples do not depend on the mAP harness
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with FileLock(path + ".lock"):  # ROW and ROW+METHOD may run at once in two processes
        if cached(path, want):
            d = np.load(path)
            return d["images"], d["labels"], d["targets"], json.loads(str(d["cost"]))
        images, labels, targets, cost = generate_cell(ctx, base, seed)
        with atomic_path(path) as tmp:
            np.savez(tmp, images=images, labels=labels, targets=targets, cost=json.dumps(cost), stamp=want)
    return images, labels, targets, cost


def memorisation(ctx: Context, row: str, images: np.ndarray, targets: np.ndarray, seed: int) -> dict | None:
    """Does the row's sample of each tail class sit closer to the real train images than new
    real images of the class do (``ltbench.eval.memorisation``)? In pixels and, with an oracle,
    in its feature space (the train features computed once per run). "New" is the seed's
    memorisation reference (``Context.memorisation_reference``: real images of the class in no
    split and in no ``real`` row), as they are for the rows whose images are real or pixel-space
    (``real``, ``oversample``, ``smote-pixel``) and through the autoencoder for the rows whose
    images are decoded latents (``vae``, every latent-space generator): like is compared with
    like, so the floors ``real`` and ``vae`` are new by construction and a flag means "closer
    to train than new real images would be after the same decoder". None for a row without
    samples."""
    from ltbench.eval.memorisation import memorisation as measure

    if not len(images):
        return None
    spec = parse_row(row)
    decoded = spec["method"] == "vae" or spec["space"] == "latent"
    ref = ctx.memorisation_reference(seed, round_tripped=decoded)
    gen = {c: images[targets == ctx.classes.index(c)] for c in ctx.tail}
    feats = ctx.train_features()
    with torch.no_grad():
        res = measure(gen, ref, ctx.x_train, features=ctx.oracle.features if feats is not None else None, train_features=feats)
    res.pop("rule")
    res["reference"] = "new real images through the autoencoder" if decoded else "new real images"
    return res


def image_metrics(ctx: Context, images: np.ndarray, labels: np.ndarray, targets: np.ndarray, seed: int) -> dict:
    """Tail FID/KID/precision/recall per feature space (the samples made FOR each class against
    seed ``seed``'s real reference of the class) and label fidelity."""
    from ltbench.eval.fid import INCEPTION_EXTRACTOR, NA_INCEPTION, NA_XRV, ORACLE_EXTRACTOR, XRV_EXTRACTOR, inception_weights, tail_metrics, xrv_weights
    from ltbench.eval.fidelity import label_fidelity

    if not len(images):
        return {"tail_metrics": None, "label_fidelity": None}
    ref = ctx.fid_reference(seed)
    # every metric sees exactly the samples made FOR each class (union labels add none)
    by_class = {c: images[targets == ctx.classes.index(c)] for c in ctx.tail}
    metrics = {}
    if ctx.oracle_file:
        metrics["oracle"] = tail_metrics(ref, by_class, ctx.tail, ORACLE_EXTRACTOR, ctx.oracle_file)
    w = inception_weights(ctx.preset.inception_weights)
    metrics["inception"] = tail_metrics(ref, by_class, ctx.tail, INCEPTION_EXTRACTOR, w) if w else NA_INCEPTION
    xw = xrv_weights()
    metrics["xrv"] = tail_metrics(ref, by_class, ctx.tail, XRV_EXTRACTOR, xw) if xw else NA_XRV
    fidelity = label_fidelity(ctx.oracle, images, labels, ctx.classes, ctx.tail, targets=targets) if ctx.oracle else None
    return {"tail_metrics": metrics, "label_fidelity": fidelity}


def evaluate_cell(ctx: Context, row: str, seed: int) -> tuple[dict, tuple]:
    """Compute one cell. Returns (the cell: schema, metadata, config, results; its samples
    (images, targets) for the runner's figures)."""
    from ltbench.data.rows import ConcatRows
    from ltbench.eval.classifier import generated_share, head_tail_map, train_and_score

    p = ctx.preset
    images, labels, targets, cost = samples(ctx, row, seed)
    ctx.peaks.mark("generate")
    cost = dict(cost)
    results: dict = {"cost": cost, "localisation": cost.pop("localisation", None)}
    t = time.perf_counter()
    results.update(image_metrics(ctx, images, labels, targets, seed))
    results["memorisation"] = memorisation(ctx, parse_row(row)["base"], images, targets, seed)
    results["fit"] = fit_names(ctx, row, seed)
    results["generated_per_class"] = {c: int((targets == ctx.classes.index(c)).sum()) for c in ctx.tail}
    results["metrics_seconds"] = round(time.perf_counter() - t, 2)
    ctx.peaks.mark("metrics")
    x = ConcatRows(ctx.x_train, images) if len(images) else ctx.x_train  # read batch by batch, never concatenated
    y = np.concatenate([ctx.y_train, labels]) if len(images) else ctx.y_train
    init = ctx.classifier_init(seed)  # the seed's shared warm start: a stage of its own, not timed as this row's
    results["fit"]["warm_start"] = None if init is None else state_digest(init)  # the same for every cell of the seed
    t = time.perf_counter()
    _, ap = train_and_score(x, y, ctx.x_test, ctx.y_test, ctx.classes, p.classifier, seed=seed, device=ctx.classifier_device, n_real=len(ctx.x_train), init=init, progress=ctx.progress, desc=f"densenet121 {row} s{seed}", required=ctx.head + ctx.tail, method=parse_row(row)["trainer"])
    results.update(head_tail_map(ap, ctx.head, ctx.tail))
    results["average_precision"] = ap
    results["classifier_seconds"] = round(time.perf_counter() - t, 2)
    ctx.peaks.mark("classifier")
    results["train_size"] = {"real": int(len(ctx.x_train)), "generated": int(len(images))}
    share = generated_share(len(ctx.x_train), len(images), p.classifier.generated_share)
    steps, warm = p.classifier.steps, (p.classifier.warm_steps if init is not None else 0)
    results["generated_share"] = {"of_row_steps": share, "of_all_steps": share * steps / (steps + warm), "generated_slots": round(share * steps * p.classifier.batch_size)}
    from ltbench import ops
    from ltbench.utils.device import resolve_device

    # which ops ran: the fused kernels of the device the method ran on, or the references
    cell = {"schema": SCHEMA, "metadata": {**metadata(seed), "ops_backend": ops.backend_for(resolve_device(p.device)), "sources": ctx.sources}, "config": ctx.cell_config(row, seed), "results": results}
    return cell, (images, targets)


__all__ = ["cell_localisation", "evaluate_cell", "generate_cell", "image_metrics", "samples"]
