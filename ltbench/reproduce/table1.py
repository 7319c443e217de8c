"""``python -m ltbench.reproduce table1``: every row of Table 1, every seed, one JSON per cell.

A cell is (row, seed): generate ``n_per_class`` samples per tail class with the row's
augmenter (through the registry), turn them into images (latent rows are decoded by the
prior's VAE), then measure tail FID per feature space, label fidelity (oracle), the cost, and
the head/tail mAP of a DenseNet121 trained on train + generated images. Cells already on
disk with the same config are reused; a killed run resumes (cells and stages are written
atomically). Shared stages are cached under ``OUT/work``: the data, the train latents, the
FID reference images, and ONE iterated-learning fit (with its CAMs) shared by every fsa-il
row and seed. The seed varies the augmenter's draws and the classifier's init and batches.

``table1.md`` / ``table1.csv`` and the figures are rendered from the cell JSONs only
(``ltbench.reproduce.report``).
"""

import dataclasses
import glob
import json
import logging
import os
import shutil
import time

import numpy as np
import torch

from ltbench.augment import make_augmenter
from ltbench.data.classes import HEAD_CLASSES, PAPER_CLASSES, TAIL_CLASSES, TARGET_PREVALENCE
from ltbench.data.phantom import generate, make_labels
from ltbench.data.phantom.render import RENDERER_VERSION
from ltbench.eval.classifier import average_precisions, head_tail_map, predict, train_classifier
from ltbench.eval.fid import INCEPTION_EXTRACTOR, NA_INCEPTION, NA_XRV, ORACLE_EXTRACTOR, XRV_EXTRACTOR, inception_weights, tail_metrics, xrv_weights
from ltbench.eval.fidelity import label_fidelity
from ltbench.reproduce.presets import ALL_ROWS, Table1Preset
from ltbench.reproduce.provenance import metadata
from ltbench.utils.io import atomic_path, atomic_write_json, clean_stale_tmp, sha256_file
from ltbench.utils.lock import FileLock

log = logging.getLogger("ltbench.reproduce")
SCHEMA = "ltbench.table1.cell/2"


class ConfigMismatch(ValueError):
    pass


def cell_key(row: str, seed: int) -> str:
    return f"{row}__seed{seed}"


# fsa-il row variants: ``fsa-il@K-<variant>`` changes one FusionConfig field of the preset's
FSA_VARIANTS = {
    "union": {"label_policy": "union"},
    "tail": {"label_policy": "tail"},  # the authors' stored label
    "oracle": {"label_policy": "oracle"},
    "randmask": {"masks": "random"},  # control: M^S, M^G at random positions, same areas
    "authors": {"decoder": "train-batch2"},  # the authors' fusion script: BatchNorm in train mode, pairs
}


def parse_row(row: str) -> dict:
    """``fsa-il@5`` -> {"method": "fsa-il", "k": 5, "fusion": {}}; ``fsa-il@0-tail`` ->
    fusion {"label_policy": "tail"} (``FSA_VARIANTS``); other names are the augmenter itself
    (``smote-pixel``: pixel space)."""
    if row not in ALL_ROWS and not row.startswith("fsa-il@"):
        raise ValueError(f"unknown Table 1 row {row!r}; available: {', '.join(ALL_ROWS)}")
    if row.startswith("fsa-il@"):
        k, _, variant = row[len("fsa-il@") :].partition("-")
        if not k.isdigit() or (variant and variant not in FSA_VARIANTS):
            raise ValueError(f"bad fsa-il row {row!r}: expected fsa-il@K or fsa-il@K-VARIANT with VARIANT one of {', '.join(FSA_VARIANTS)}")
        return {"method": "fsa-il", "k": int(k), "fusion": dict(FSA_VARIANTS.get(variant, {})), "space": "latent"}
    if row == "smote-pixel":
        return {"method": "smote", "space": "pixel"}
    if row in ("real", "vae"):
        return {"method": row, "space": "pixel"}
    return {"method": row, "space": "pixel" if row in ("none", "oversample") else "latent"}


# ---- shared stages ----------------------------------------------------------------------
class Context:
    """Everything the cells share. Images are uint8 [N, H, W]; labels uint8 [N, K]."""

    def __init__(self, preset: Table1Preset, out: str, progress: bool):
        self.preset, self.out, self.progress = preset, out, progress
        self.work = os.path.join(out, "work")
        self.classes, self.head, self.tail = list(PAPER_CLASSES), list(HEAD_CLASSES), list(TAIL_CLASSES)
        self.timings: dict = {}
        from ltbench.utils.memory import StagePeaks

        self.peaks = StagePeaks()  # peak RSS per stage, for run.json
        self._prior = self._oracle = self._il = self._latents = None
        self.inputs = input_identity(preset)

    def data_key(self) -> dict:
        """What the train/test images depend on (part of every cached stage's stamp)."""
        p = self.preset
        return {"phantom": dataclasses.asdict(p.phantom), "renderer": self.inputs["phantom_renderer"], "dataset": p.dataset, "root": p.data_root, "size": p.image_size, "sample": p.train_sample}

    def cell_config(self, row: str, seed: int) -> dict:
        """The preset's cell config plus the identity of the inputs it was computed from."""
        return {**self.preset.cell_config(row, seed), "inputs": self.inputs}

    # shared stages: computed once per --out, whatever the number of processes ------------
    # Processes that share --out (torchrun ranks, --shard copies, two runs started at once)
    # take a lock per stage: the first computes and caches it in work/, the others wait and
    # read the cache.
    def _stage(self, name: str) -> FileLock:
        os.makedirs(self.work, exist_ok=True)
        return FileLock(os.path.join(self.work, f".{name}.lock"))

    def load_data(self) -> None:
        with self._stage("data"):
            self._load_data_unlocked()

    def latents(self) -> torch.Tensor:
        if self._latents is None:
            with self._stage("latents"):
                self._latents_unlocked()
        return self._latents

    def fid_reference(self) -> dict:
        with self._stage("fid_reference"):
            return self._fid_reference_unlocked()

    def heldout(self):
        with self._stage("heldout"):
            return self._heldout_unlocked()

    def classifier_init(self, seed: int) -> dict | None:
        """The seed's shared DenseNet121 starting point (``warm_steps`` on the real train
        images alone), or None when every row trains from scratch."""
        if self.preset.classifier.warm_steps < 1:
            return None
        with self._stage(f"warm-seed{seed}"):
            return self._classifier_init_unlocked(seed)

    def il_fit(self):
        if self._il is None:
            self.latents()
            with self._stage("il"):
                self._il_fit_unlocked()
        return self._il

    # data -------------------------------------------------------------------------------
    def _load_data_unlocked(self) -> None:
        """Train, val and test images and labels, as files under ``work/data``: one ``.npy`` of
        uint8 [N, S, S] per split, read a few rows at a time (``RowFile``), so no stage holds
        a split in memory; labels (small) are loaded. The phantom preset renders its images
        in chunks; with ``data_root`` a registered dataset is read from its files (the paper's
        MIMIC-CXR-LT, or the phantom written by ``ltbench data phantom``) through DataLoader
        workers, at most ``train_sample`` train rows (a seeded sample, like the paper's)."""
        from ltbench.data.rows import RowFile

        folder = os.path.join(self.work, "data")
        meta = os.path.join(folder, "meta.npz")
        stamp = _stamp(self.data_key())
        t = time.perf_counter()
        if not _cached(meta, stamp):
            shutil.rmtree(folder, ignore_errors=True)
            labels = self._render_phantom(folder) if self.preset.data_root is None else self._read_files(folder)
            with atomic_path(meta) as tmp:  # written last: the split files before it are whole
                np.savez(tmp, stamp=stamp, **{f"labels_{k}": v for k, v in labels.items()})
        d = np.load(meta)
        self.x_train, self.x_val, self.x_test = (RowFile(os.path.join(folder, f"{k}.npy")) for k in ("train", "val", "test"))
        self.y_train, self.y_val, self.y_test = d["labels_train"], d["labels_val"], d["labels_test"]
        self.timings["data_s"] = round(time.perf_counter() - t, 2)
        self.peaks.mark("data")
        for c in self.tail:
            if self.y_train[:, self.classes.index(c)].sum() == 0:
                raise ValueError(f"the train split has no '{c}' example to augment; use a larger dataset")
            if self.y_test[:, self.classes.index(c)].sum() == 0:
                raise ValueError(f"the test split has no '{c}' example: its average precision is undefined")

    CHUNK = 512  # images rendered or read per write

    def _render_phantom(self, folder: str) -> dict:
        from tqdm.auto import tqdm

        from ltbench.data.rows import RowWriter

        cfg = self.preset.phantom
        labels, split = make_labels(cfg)
        out = {}
        for k in ("train", "val", "test"):
            idx = np.flatnonzero(split == k)
            with RowWriter(os.path.join(folder, f"{k}.npy"), (len(idx), cfg.size, cfg.size), np.uint8) as w:
                for i in tqdm(range(0, len(idx), self.CHUNK), desc=f"render {k}", disable=not self.progress, leave=False):
                    w.write(generate(cfg, indices=idx[i : i + self.CHUNK]).images)
            out[k] = labels[idx].astype(np.uint8)
        return out

    def _read_files(self, folder: str) -> dict:
        from ltbench.data.csv_dataset import ImageConfig
        from ltbench.data.presets import DATASETS, open_dataset
        from ltbench.data.rows import read_to_rows

        p = self.preset
        if tuple(DATASETS[p.dataset].classes) != tuple(self.classes):
            raise ValueError(f"dataset {p.dataset!r} does not have Table 1's ten classes in order; use mimic-cxr-lt-paper or phantom")
        out = {}
        for split in ("train", "val", "test"):
            # an unreadable image is skipped (and reported by the dataset); the file holds the rest
            ds = open_dataset(p.dataset, p.data_root, split=split, image=ImageConfig(size=p.image_size, channels=1, on_error="skip"))
            idx = np.arange(len(ds))
            if split == "train" and p.train_sample and p.train_sample < len(ds):
                idx = np.sort(np.random.default_rng(0).choice(len(ds), p.train_sample, replace=False))
            out[split] = read_to_rows(ds, os.path.join(folder, f"{split}.npy"), idx, progress=self.progress, desc=f"read {split}")
        return out

    @property
    def vae_batch(self) -> int:
        """Images per VAE call: 128 at 64 px, fewer at larger sizes (memory ~ batch x pixels);
        on a GPU 8x as many (16 at 512 px)."""
        scale = 8 if str(self.prior.device).startswith("cuda") else 1
        return max(1, scale * 128 * 64 * 64 // (self.preset.image_size**2))

    @property
    def prior(self):
        if self._prior is None:
            from ltbench.prior.pipeline import load_prior

            self._prior = load_prior(self.preset.prior, device=self.preset.device)
        return self._prior

    @property
    def oracle(self):
        if self._oracle is None and self.preset.oracle:
            from ltbench.eval.oracle import load_oracle

            self._oracle = load_oracle(self.preset.oracle)
        return self._oracle

    @property
    def oracle_file(self) -> str | None:
        return _oracle_file(self.preset)

    def _latents_unlocked(self) -> torch.Tensor:
        """Train latents (posterior means, scaled) of the prior's VAE, cached."""
        if self._latents is None:
            from ltbench.prior.vae import vae_identity

            path = os.path.join(self.work, "latents.pt")
            stamp = _stamp({**self.data_key(), "vae": vae_identity(self.prior.path)["weights_sha256"]})
            self.latent_stamp = stamp
            t = time.perf_counter()
            if not _cached(path, stamp, torch_file=True):
                bs = self.vae_batch
                step = max(bs, 2**28 // (12 * self.preset.image_size**2))  # images read per chunk: <= 256 MiB as float RGB
                chunks = range(0, len(self.x_train), step)
                from tqdm.auto import tqdm

                z = torch.cat([self.prior.encode(images_to_unit(self.x_train[i : i + step]), batch_size=bs) for i in tqdm(chunks, desc="encode", disable=not self.progress)])
                with atomic_path(path) as tmp:
                    torch.save({"latents": z, "stamp": stamp}, tmp)
            self._latents = torch.load(path, weights_only=True)["latents"]
            self.timings["encode_s"] = round(time.perf_counter() - t, 2)
            self.peaks.mark("encode")
        return self._latents

    def _fid_reference_unlocked(self) -> dict:
        """Real images per tail class, at most ``fid_real_per_class`` each: on the in-memory
        phantom, freshly rendered images containing the class from a seed the benchmark never
        uses; on files, the test split's images of the class."""
        path = os.path.join(self.work, "fid_reference.npz")
        p = self.preset
        stamp = _stamp({**self.data_key(), "m": p.fid_real_per_class, "seed": p.fid_reference_seed})
        if not _cached(path, stamp) and p.data_root is not None:
            ref = {c: self.x_test[np.flatnonzero(self.y_test[:, self.classes.index(c)] == 1)[: p.fid_real_per_class]] for c in self.tail}
            with atomic_path(path) as tmp:
                np.savez(tmp, stamp=stamp, **{_safe(c): v for c, v in ref.items()})
        if not _cached(path, stamp):
            rarest = min(TARGET_PREVALENCE[c] for c in self.tail)
            cfg = dataclasses.replace(p.phantom, n=int(3 * p.fid_real_per_class / rarest) + 1000, seed=p.fid_reference_seed, min_test_positives=0)
            labels, _ = make_labels(cfg)
            ref = {}
            for c in self.tail:
                idx = np.flatnonzero(labels[:, self.classes.index(c)] == 1)[: p.fid_real_per_class]
                ref[c] = generate(cfg, indices=idx).images
            with atomic_path(path) as tmp:
                np.savez(tmp, stamp=stamp, **{_safe(c): v for c, v in ref.items()})
        d = np.load(path)
        return {c: d[_safe(c)] for c in self.tail}

    def _heldout_unlocked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``real`` row: ``n_per_class`` held-out real images per tail class, in ``tail``
        order, never in train, test or the FID reference. Returns (uint8 [M, H, W], labels
        uint8 [M, K], targets int[M]: the tail class index each image stands for). On the
        in-memory phantom, freshly rendered from ``heldout_seed``; on files, the val split
        (a class with fewer val images gets all it has: the count is in the cell)."""
        path = os.path.join(self.work, "heldout.npz")
        p = self.preset
        stamp = _stamp({**self.data_key(), "n": p.n_per_class, "seed": p.heldout_seed})
        if not _cached(path, stamp):
            if p.data_root is not None:
                idx = [np.flatnonzero(self.y_val[:, self.classes.index(c)] == 1)[: p.n_per_class] for c in self.tail]
                images, labels = self.x_val[np.concatenate(idx)], self.y_val[np.concatenate(idx)]
            else:
                rarest = min(TARGET_PREVALENCE[c] for c in self.tail)
                cfg = dataclasses.replace(p.phantom, n=int(3 * len(self.tail) * p.n_per_class / rarest) + 1000, seed=p.heldout_seed, min_test_positives=0)
                all_labels, _ = make_labels(cfg)
                used, idx = set(), []
                for c in self.tail:  # distinct images per class: an image of two tail classes stands for one
                    cand = [i for i in np.flatnonzero(all_labels[:, self.classes.index(c)] == 1) if i not in used][: p.n_per_class]
                    used.update(cand)
                    idx.append(np.asarray(cand, np.int64))
                d = generate(cfg, indices=np.concatenate(idx))
                images, labels = d.images, d.labels
            targets = np.concatenate([np.full(len(i), self.classes.index(c)) for c, i in zip(self.tail, idx)])
            with atomic_path(path) as tmp:
                np.savez(tmp, images=images, labels=labels, targets=targets, stamp=stamp)
        d = np.load(path)
        return d["images"], d["labels"], d["targets"]

    def _classifier_init_unlocked(self, seed: int) -> dict:
        from ltbench.eval.classifier import warm_start

        path = os.path.join(self.work, "classifier", f"warm-seed{seed}.pt")
        warm = {k: v for k, v in dataclasses.asdict(self.preset.classifier).items() if k not in ("steps", "finetune_lr", "eval_batch_size")}
        stamp = _stamp({**self.data_key(), "classifier": warm, "seed": seed})
        if not _cached(path, stamp, torch_file=True):
            t = time.perf_counter()
            state = warm_start(self.x_train, self.y_train, self.preset.classifier, seed=seed, device=self.classifier_device, progress=self.progress, desc=f"densenet121 warm start s{seed}")
            with atomic_path(path) as tmp:
                torch.save({"state": state, "stamp": stamp}, tmp)
            self.timings["classifier_warm_s"] = round(self.timings.get("classifier_warm_s", 0.0) + time.perf_counter() - t, 2)
            self.peaks.mark("classifier_warm")
        return torch.load(path, weights_only=True)["state"]

    @property
    def classifier_device(self) -> str:
        return str(self.prior.device) if self.preset.device != "cpu" else "cpu"

    def _il_fit_unlocked(self):
        """One fsa-il fit (iterated learning + CAMs) on the train latents, shared by the
        fsa-il rows; cached in ``work/il`` and ``work/cams`` (IL resumes per generation)."""
        if self._il is None:
            t = time.perf_counter()
            z = self.latents()
            il_dir = os.path.join(self.work, "il")
            stamp_file = os.path.join(il_dir, "stamp.json")
            stamp = _stamp({"il": dataclasses.asdict(self.preset.il), "latents": self.latent_stamp})
            if os.path.exists(stamp_file):
                with open(stamp_file) as f:
                    if json.load(f) != stamp:
                        shutil.rmtree(il_dir)  # fitted on other latents or settings
            os.makedirs(il_dir, exist_ok=True)
            atomic_write_json(stamp_file, stamp)
            seconds_file = os.path.join(il_dir, "fit_seconds.json")
            fresh = not os.path.exists(seconds_file)
            fsa = make_augmenter("fsa-il", classes=self.classes, head=self.head, tail=self.tail, il=self.preset.il, work_dir=self.work, progress=self.progress).fit(z, self.y_train)
            self._il = (fsa.model_, fsa.cams_, fsa.scores_)
            self.timings["il_fit_s"] = round(time.perf_counter() - t, 2)
            self.peaks.mark("il_fit")
            if fresh:  # the one-off cost of the fsa-il rows, kept when the fit is reused
                atomic_write_json(seconds_file, {"il_and_cams_seconds": self.timings["il_fit_s"]})
            with open(seconds_file) as f:
                self.il_fit_seconds = json.load(f)["il_and_cams_seconds"]
        return self._il


def input_identity(preset: Table1Preset) -> dict:
    """What a cell depends on beyond its config: the phantom renderer's version (in-memory
    phantom only), and SHA-256s of the prior's weight files and of the oracle's. A cell or cached
    stage computed from other inputs (an upgraded ltbench, a retrained prior) is not reused."""
    from ltbench.prior.vae import resolve_prior

    folder = resolve_prior(preset.prior)
    weights = sorted(glob.glob(os.path.join(folder, "*", "*.safetensors")) + glob.glob(os.path.join(folder, "*", "*.bin")))
    prior = {os.path.relpath(w, folder): sha256_file(w)[:16] for w in weights}
    o = _oracle_file(preset)
    oracle = sha256_file(o)[:16] if o and os.path.isfile(o) else None
    return {"phantom_renderer": RENDERER_VERSION if preset.data_root is None else None, "prior": prior, "oracle": oracle}


def _oracle_file(preset: Table1Preset) -> str | None:
    if not preset.oracle:
        return None
    from ltbench.eval.oracle import SHIPPED, WEIGHTS

    p = SHIPPED if preset.oracle == "phantom" else preset.oracle
    return os.path.join(p, WEIGHTS) if os.path.isdir(p) else p


def _safe(c: str) -> str:
    return c.replace(" ", "_")


def _stamp(obj) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(path: str, stamp: str, torch_file: bool = False) -> bool:
    if not os.path.exists(path):
        return False
    try:
        got = torch.load(path, weights_only=True)["stamp"] if torch_file else str(np.load(path)["stamp"])
    except Exception:  # noqa: BLE001 - a corrupt cache is recomputed
        return False
    return got == stamp


def images_to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] -> float [N, 3, H, W] in [0, 1] (the VAE's RGB input)."""
    return torch.from_numpy(np.asarray(images)).float().div(255)[:, None].expand(-1, 3, -1, -1).contiguous()


def to_uint8_gray(x: torch.Tensor) -> np.ndarray:
    """float [N, C, H, W] in [0, 1] -> uint8 [N, H, W] (channel mean, rounded like a PNG)."""
    if len(x) == 0:
        return np.zeros((0, 0, 0), np.uint8)
    return x.float().mean(1).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def decode_uint8(prior, z: torch.Tensor, batch_size: int, image_shape) -> np.ndarray:
    """Latents -> uint8 [M, H, W] images, decoded a batch at a time (a float copy of all the
    decoded images would be 12x their uint8 bytes: 15 GB for 5,000 samples at 512 px)."""
    out = np.zeros((len(z), *image_shape), np.uint8)
    for i in range(0, len(z), batch_size):
        out[i : i + batch_size] = to_uint8_gray(prior.decode(z[i : i + batch_size], batch_size=batch_size))
    return out


# ---- one cell ---------------------------------------------------------------------------
def generate_cell(ctx: Context, row: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Run the row's augmenter; returns (images uint8 [M, H, W], labels uint8 [M, K], targets
    int[M] = the tail class index each sample was made for, cost). Every augmenter makes
    ``n_per_class`` samples per tail class, in ``tail`` order (the contract)."""
    p, spec = ctx.preset, parse_row(row)
    if spec["method"] in ("real", "vae"):
        images, labels, targets = ctx.heldout()
        t = time.perf_counter()
        if spec["method"] == "vae":
            from ltbench.eval.roundtrip import round_trip

            images = round_trip(ctx.prior, images, batch_size=ctx.vae_batch)
        seconds = time.perf_counter() - t
        cost = {"n_generated": len(images), "fit_seconds": 0.0, "generate_seconds": round(seconds, 3), "samples_per_s": round(len(images) / seconds, 3) if spec["method"] == "vae" and seconds > 0 else None, "unet_evals_per_sample": 0.0, "space": "pixel"}
        cost["seconds_to_n_per_class"] = cost["generate_seconds"]
        return images, labels.astype(np.uint8), targets, cost
    base = dict(classes=ctx.classes, head=ctx.head, tail=ctx.tail, n_per_class=p.n_per_class, seed=seed)
    if spec["method"] == "fsa-il":
        fusion = dataclasses.replace(p.fusion, n_per_class=p.n_per_class, refine_steps=spec["k"], seed=seed, **spec["fusion"])
        oracle = None
        if fusion.label_policy == "oracle":
            if ctx.oracle is None:
                raise ValueError(f"row {row} needs an oracle")
            oracle = lambda z: ctx.oracle.positive(to_uint8_gray(ctx.prior.decode(z))).astype(np.float32)  # noqa: E731
        aug = make_augmenter("fsa-il", classes=ctx.classes, head=ctx.head, tail=ctx.tail, fusion=fusion, prior=ctx.prior, oracle=oracle, fitted=ctx.il_fit())
    elif spec["method"] == "t2i":
        aug = make_augmenter("t2i", prior=ctx.prior, steps=p.t2i_steps, guidance=p.t2i_guidance, **base)
    else:
        aug = make_augmenter(spec["method"], **base)
    if spec["method"] == "none":  # nothing to generate: the train images are not read
        cost = {"n_generated": 0, "fit_seconds": 0.0, "generate_seconds": 0.0, "samples_per_s": None, "unet_evals_per_sample": None, "seconds_to_n_per_class": 0.0, "space": spec["space"]}
        return np.zeros((0, *ctx.x_train.shape[1:]), np.uint8), np.zeros((0, len(ctx.classes)), np.uint8), np.zeros(0, np.int64), cost
    # pixel-space baselines (oversample, smote-pixel) work on the whole train matrix: they hold it
    X = ctx.latents() if spec["space"] == "latent" else torch.from_numpy(np.asarray(ctx.x_train)).float().div(255)[:, None]
    t = time.perf_counter()
    with ctx.prior.count_unet() as cnt:
        X_new, y_new = aug.fit_generate(X, ctx.y_train)
    if spec["space"] == "latent":
        images = decode_uint8(ctx.prior, X_new, ctx.vae_batch, ctx.x_train.shape[1:])
    else:
        images = to_uint8_gray(X_new) if len(X_new) else np.zeros((0, *ctx.x_train.shape[1:]), np.uint8)
    seconds = time.perf_counter() - t
    n = len(images)
    if n and n != p.n_per_class * len(ctx.tail):
        raise AssertionError(f"{row} made {n} samples; the augmenter contract is n_per_class = {p.n_per_class} per tail class, in tail order")
    targets = np.repeat([ctx.classes.index(c) for c in ctx.tail], p.n_per_class) if n else np.zeros(0, np.int64)
    localisation = cell_localisation(ctx, aug) if spec["method"] == "fsa-il" else None
    # one-off fit: the shared IL fit + CAMs for fsa-il (SMOTE's neighbour search runs inside
    # its generation call, so it is in generate_seconds)
    fit = float(getattr(ctx, "il_fit_seconds", 0.0)) if spec["method"] == "fsa-il" else 0.0
    cost = {
        "n_generated": n,
        "fit_seconds": round(fit, 3),
        "generate_seconds": round(seconds, 3),
        "samples_per_s": round(n / seconds, 3) if n else None,
        "unet_evals_per_sample": round(cnt.rows / n, 2) if n else None,
        "seconds_to_n_per_class": round(fit + seconds, 3),
        "space": spec["space"],
    }
    if localisation is not None:
        cost["localisation"] = localisation  # cached with the samples; moved to the results by run_cell
    return images, y_new.astype(np.uint8), targets, cost


def cell_localisation(ctx: Context, aug) -> dict | None:
    """How well the M^S this fsa-il cell fused with covered the finding, on the phantom's ground
    truth: per tail class, over the tail examples it took (``aug.partners_``), the localisation
    summary of ``diagnostics.localisation`` (with a random mask of M^S's area beside it). None
    on data without masks, and for the random-mask control (its M^S is random by design)."""
    from ltbench.reproduce.diagnostics import grid_fraction, localisation, summarise, train_masks

    if ctx.preset.data_root is not None or aug.fusion.masks != "cam":
        return None
    _, cams, _ = ctx.il_fit()
    out = {}
    for c in ctx.tail:
        k = ctx.classes.index(c)
        rows = np.unique(aug.partners_[aug.partners_[:, 3] == k, 0])  # the distinct tail examples fused for c
        cam = np.asarray(cams[rows], dtype=np.float32)
        out[c] = {"examples": int(len(rows)), **summarise(localisation(cam > aug.thresholds_[0], grid_fraction(train_masks(ctx.preset.phantom, rows, k), cam.shape[1:])))}
    return out


def run_cell(ctx: Context, row: str, seed: int) -> dict:
    p = ctx.preset
    gen_path = os.path.join(ctx.work, "generated", cell_key(row, seed) + ".npz")
    stamp = _stamp({k: v for k, v in ctx.cell_config(row, seed).items() if k != "classifier"})  # the samples do not depend on the mAP harness
    if _cached(gen_path, stamp):
        d = np.load(gen_path)
        images, labels, targets, cost = d["images"], d["labels"], d["targets"], json.loads(str(d["cost"]))
    else:
        images, labels, targets, cost = generate_cell(ctx, row, seed)
        with atomic_path(gen_path) as tmp:
            np.savez(tmp, images=images, labels=labels, targets=targets, cost=json.dumps(cost), stamp=stamp)
    ctx.peaks.mark("generate")
    cost = dict(cost)
    results: dict = {"cost": cost, "localisation": cost.pop("localisation", None)}
    t = time.perf_counter()
    if len(images):
        ref = ctx.fid_reference()
        # every metric sees exactly the samples made FOR each class (union labels add none)
        by_class = {c: images[targets == ctx.classes.index(c)] for c in ctx.tail}
        metrics = {}
        if ctx.oracle_file:
            metrics["oracle"] = tail_metrics(ref, by_class, ctx.tail, ORACLE_EXTRACTOR, ctx.oracle_file)
        w = inception_weights(p.inception_weights)
        metrics["inception"] = tail_metrics(ref, by_class, ctx.tail, INCEPTION_EXTRACTOR, w) if w else NA_INCEPTION
        xw = xrv_weights()
        metrics["xrv"] = tail_metrics(ref, by_class, ctx.tail, XRV_EXTRACTOR, xw) if xw else NA_XRV
        results["tail_metrics"] = metrics
        results["label_fidelity"] = label_fidelity(ctx.oracle, images, labels, ctx.classes, ctx.tail, targets=targets) if ctx.oracle else None
    else:
        results["tail_metrics"] = None
        results["label_fidelity"] = None
    results["generated_per_class"] = {c: int((targets == ctx.classes.index(c)).sum()) for c in ctx.tail}
    results["metrics_seconds"] = round(time.perf_counter() - t, 2)
    ctx.peaks.mark("metrics")
    from ltbench.data.rows import ConcatRows

    x = ConcatRows(ctx.x_train, images) if len(images) else ctx.x_train  # read batch by batch, never concatenated
    y = np.concatenate([ctx.y_train, labels]) if len(images) else ctx.y_train
    init = ctx.classifier_init(seed)  # the seed's shared warm start: a stage of its own, not timed as this row's
    t = time.perf_counter()
    net = train_classifier(x, y, p.classifier, seed=seed, device=ctx.classifier_device, progress=ctx.progress, desc=f"densenet121 {row} s{seed}", n_real=len(ctx.x_train), init=init)
    scores = predict(net, ctx.x_test, p.classifier, device=next(net.parameters()).device.type)
    ap = average_precisions(ctx.y_test, scores, ctx.classes)
    results.update(head_tail_map(ap, ctx.head, ctx.tail))
    results["average_precision"] = ap
    results["classifier_seconds"] = round(time.perf_counter() - t, 2)
    ctx.peaks.mark("classifier")
    results["train_size"] = {"real": int(len(ctx.x_train)), "generated": int(len(images))}
    if seed == 0 and len(images):
        from ltbench.reproduce.report import sample_grid

        sample_grid(ctx.fid_reference(), images, targets, ctx.classes, ctx.tail, os.path.join(ctx.out, "figures", f"samples-{row}.png"), title=f"{row}: real (left) vs generated (right)")
    return {"schema": SCHEMA, "metadata": metadata(seed), "config": ctx.cell_config(row, seed), "results": results}


# ---- the run ----------------------------------------------------------------------------
def check_inputs(preset: Table1Preset) -> None:
    """Refuse early, naming every missing input (the ``paper`` preset's local paths)."""
    missing = []
    if preset.data_root is not None and preset.dataset == "phantom" and not os.path.isdir(preset.data_root):
        missing.append(f"--data {preset.data_root}: no such folder")
    if preset.dataset != "phantom":
        if not preset.data_root:
            missing.append("--data DIR: the local MIMIC-CXR-LT folder (images + labels CSV; credentialed, PhysioNet)")
        elif not os.path.isdir(preset.data_root):
            missing.append(f"--data {preset.data_root}: no such folder")
        if not preset.prior:
            missing.append("--prior DIR: the local RoentGen diffusers folder (model_index.json, vae/, unet/, text_encoder/, tokenizer/, scheduler/)")
        elif not os.path.isfile(os.path.join(preset.prior, "model_index.json")):
            missing.append(f"--prior {preset.prior}: not a diffusers pipeline folder (no model_index.json)")
    if preset.inception_weights and not os.path.isfile(preset.inception_weights):
        missing.append(f"--inception-weights {preset.inception_weights}: no such file")
    if missing:
        raise FileNotFoundError(f"the {preset.name!r} preset cannot run; missing:\n  - " + "\n  - ".join(missing))
    if not preset.rows:
        raise ValueError("no Table 1 row to run")
    for row in preset.rows:
        spec = parse_row(row)
        if spec.get("k", 0) > preset.fusion.refine_schedule:
            raise ValueError(f"row {row}: {spec['k']} refinement steps exceed the {preset.fusion.refine_schedule}-step schedule they are taken from")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


def run_table1(preset: Table1Preset, out: str, progress: bool = True, shard: tuple[int, int] | None = None, timings: dict | None = None) -> dict:
    """Run the missing cells of ``preset`` into ``out`` and render the table. Returns
    {"ran": [...], "reused": [...], "by_others": [...], "seconds": float}.

    Scale-out: under ``torchrun --nproc_per_node=N`` every process works through the cells and
    claims each with a lock file, so the cells are spread over the processes as they free up;
    ``shard=(i, n)`` (``--shard i/n``, for n copies started by a scheduler: a Slurm array,
    several nodes) takes the cells k with k % n == i. Either way the shared stages (data,
    latents, the IL fit and CAMs, FID references) are computed once in ``out/work`` under a lock
    and reused by all, every cell is computed once, and each process re-renders the table from
    whatever cells are on disk when it finishes (the last one renders the complete table)."""
    from tqdm.auto import tqdm

    from ltbench.reproduce.report import render
    from ltbench.utils.dist import rank_world

    rank, world = rank_world()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if world > 1 and torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())  # "cuda" is this rank's GPU
    progress = progress and local_rank == 0
    check_inputs(preset)
    t0 = time.perf_counter()
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder")
    os.makedirs(os.path.join(out, "cells"), exist_ok=True)
    clean_stale_tmp(out)  # temporary files of a killed run (never a live one's)
    load_cells(out)  # every cell already on disk must be readable before any expensive stage
    ctx = Context(preset, out, progress)
    ctx.timings.update(timings or {})  # stages run before this call (the rehearsal's inputs)
    cells = [(r, s) for r in preset.rows for s in range(preset.seeds)]
    if shard is not None:
        cells = [c for k, c in enumerate(cells) if k % shard[1] == shard[0]]
    done, todo = [], []
    for r, s in cells:
        path = os.path.join(out, "cells", cell_key(r, s) + ".json")
        if os.path.exists(path):
            try:
                with open(path) as f:
                    old = json.load(f)
            except ValueError as exc:
                raise ValueError(f"{path} is not valid JSON ({exc}); delete it to recompute that cell") from exc
            want = ctx.cell_config(r, s)
            if old.get("config") != want:
                got = old.get("config") or {}
                diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
                raise ConfigMismatch(f"{path} was computed with another configuration (differs in: {', '.join(diff)}); use another --out (or delete the cell to recompute it)")
            done.append(cell_key(r, s))
        else:
            todo.append((r, s))
    if todo:
        ctx.load_data()
    ran, by_others = [], []
    with tqdm(total=len(cells), initial=len(done), desc="table1 cells", unit="cell", disable=not progress) as bar:
        pending = list(todo)
        while pending:
            progressed = False
            for r, s in list(pending):
                key = cell_key(r, s)
                path = os.path.join(out, "cells", key + ".json")
                if os.path.exists(path):  # computed meanwhile by a process sharing --out
                    pending.remove((r, s))
                    by_others.append(key)
                    bar.update(1)
                    progressed = True
                    continue
                lock = FileLock(path + ".lock")
                if not lock.try_acquire():  # another process is computing this cell: come back to it
                    continue
                try:
                    if os.path.exists(path):
                        continue
                    bar.set_postfix_str(key)
                    t = time.perf_counter()
                    cell = run_cell(ctx, r, s)
                    cell["results"]["cell_seconds"] = round(time.perf_counter() - t, 2)
                    res = cell["results"]
                    for stage, v in (("generate_s", res["cost"]["generate_seconds"]), ("metrics_s", res["metrics_seconds"]), ("classifier_s", res["classifier_seconds"])):
                        ctx.timings[stage] = round(ctx.timings.get(stage, 0.0) + v, 2)  # summed over this invocation's cells
                    atomic_write_json(path, cell)
                    log.info("cell %s done in %.0fs", key, time.perf_counter() - t)
                    ran.append(key)
                finally:
                    lock.release()
                pending.remove((r, s))
                bar.update(1)
                progressed = True
            if pending and not progressed:
                time.sleep(2.0)  # every remaining cell is being computed by another process
    with FileLock(os.path.join(out, "run.json.lock")):
        run_info = _update_run_json(out, preset, ctx, time.perf_counter() - t0, ran=ran)
        render(out, rows=preset.rows, seeds=preset.seeds, run_info=run_info)
    return {"ran": ran, "reused": done, "by_others": by_others, "seconds": round(time.perf_counter() - t0, 1), "rank": rank, "world": world, "shard": f"{shard[0]}/{shard[1]}" if shard else None}


def _update_run_json(out: str, preset: Table1Preset, ctx: Context, seconds: float, ran: list) -> dict:
    path = os.path.join(out, "run.json")
    prev = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                prev = json.load(f)
            if not isinstance(prev, dict) or not isinstance(prev.get("invocations", []), list):
                raise ValueError("not a run record")
        except ValueError as exc:
            raise ValueError(f"{path} is malformed ({exc}); delete it (the cells are kept and the table re-renders)") from None
    from ltbench.utils.dist import rank_world

    rank, world = rank_world()
    history = prev.get("invocations", []) + [{"seconds": round(seconds, 1), "cells_run": ran, "rank": rank, "world": world, "stage_timings": ctx.timings, **ctx.peaks.as_dict(), "metadata": metadata(None)}]
    info = {"preset": preset.name, "config": dataclasses.asdict(preset), "invocations": history}
    if hasattr(ctx, "x_train"):
        info["split_sizes"] = {"train": len(ctx.x_train), "val": len(ctx.x_val), "test": len(ctx.x_test), "image_px": int(ctx.x_train.shape[-1])}
    elif "split_sizes" in prev:
        info["split_sizes"] = prev["split_sizes"]
    if preset.oracle:
        from ltbench.eval.oracle import oracle_json

        info["oracle"] = {"trained": oracle_json(preset.oracle)}
        if hasattr(ctx, "x_test"):  # the oracle on this run's own test split: the ceiling to compare with
            probs = np.concatenate([ctx.oracle.probs(ctx.x_test[i : i + 1024]) for i in range(0, len(ctx.x_test), 1024)])
            ap = average_precisions(ctx.y_test, probs, ctx.classes)
            info["oracle"]["test_average_precision"] = ap
            info["oracle"].update(head_tail_map(ap, ctx.head, ctx.tail))
        elif "test_average_precision" in prev.get("oracle", {}):
            info["oracle"].update({k: prev["oracle"][k] for k in ("test_average_precision", "head_map", "tail_map")})
    atomic_write_json(path, info)
    return info


METADATA_KEYS = ("git_sha", "utc_time", "versions", "device", "ops_backend", "seed")
RESULT_KEYS = ("cost", "tail_metrics", "label_fidelity", "head_map", "tail_map", "average_precision", "train_size")


def validate_cell(cell: dict, where: str = "cell") -> dict:
    """Check a cell's structure (the result schema); raises ValueError naming what is wrong."""
    problems = []
    if cell.get("schema") != SCHEMA:
        problems.append(f"schema is {cell.get('schema')!r}, expected {SCHEMA!r}")
    for part, keys in (("metadata", METADATA_KEYS), ("results", RESULT_KEYS)):
        missing = [k for k in keys if k not in (cell.get(part) or {})]
        if missing:
            problems.append(f"{part} lacks {missing}")
    cfg = cell.get("config") or {}
    if not isinstance(cfg.get("row"), str) or not isinstance(cfg.get("seed"), int):
        problems.append("config lacks row/seed")
    res = cell.get("results") or {}
    for k in ("head_map", "tail_map"):
        v = res.get(k)
        if k in res and not (isinstance(v, float) and 0.0 <= v <= 1.0):
            problems.append(f"results.{k} = {v!r} is not a number in [0, 1]")
    if problems:
        raise ValueError(f"{where} is not a valid Table 1 cell: " + "; ".join(problems))
    return cell


def load_cells(out: str) -> list[dict]:
    cells = []
    for path in sorted(glob.glob(os.path.join(out, "cells", "*.json"))):
        with open(path) as f:
            try:
                cell = json.load(f)
            except ValueError as exc:
                raise ValueError(f"{path} is not valid JSON ({exc}); delete it to recompute that cell") from exc
        cells.append(validate_cell(cell, path))
    return cells


__all__ = ["Context", "ConfigMismatch", "cell_key", "check_inputs", "load_cells", "parse_row", "run_table1", "validate_cell"]
