"""The stages Table 1's cells share, computed once per run folder and cached under
``OUT/work``: the data (train/val/test images as row files) and the train latents; per seed the
FID reference images, the held-out real images of the ``real``/``vae`` rows, the classifier's
warm start and the iterated-learning fit with its CAMs (and a re-check of the CAM choice on
it); and the oracle's score of the test split. Every cached file carries a stamp of what it was computed from (config, input weights,
renderer); a stamp that differs recomputes the stage.

Processes sharing ``OUT`` (torchrun ranks, ``--shard`` copies, two runs started at once) take a
lock per stage: the first computes and caches it, the others wait and read the cache."""

import dataclasses
import hashlib
import json
import os
import shutil
import time

import numpy as np
import torch

from ltbench.reproduce.presets import PRESETS, Table1Preset
from ltbench.utils.io import atomic_path, atomic_write_json
from ltbench.utils.lock import FileLock


# the memorisation reference of seed s is rendered from heldout_seed + this + s: apart from
# every seed's `real` draw (heldout_seed + s) for any seed count below it
MEMORISATION_REFERENCE_OFFSET = 100_000


def state_digest(state) -> str:
    """SHA-256 (16 hex) over a state dict's (or a tensor / array / nested list's) names, dtypes,
    shapes and bytes: which weights a cell was computed from, so that cells claiming one shared
    warm start or fit can be checked to have had the same one."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().contiguous()
            h.update(f"T{v.dtype}{tuple(v.shape)}".encode())
            h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, np.ndarray):
            h.update(f"A{v.dtype}{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes())
        elif isinstance(v, dict):
            for k in sorted(v, key=str):
                h.update(str(k).encode())
                feed(v[k])
        elif isinstance(v, (list, tuple)):
            h.update(f"L{len(v)}".encode())
            for e in v:
                feed(e)
        else:
            h.update(repr(v).encode())

    feed(state)
    return h.hexdigest()[:16]


def stamp(obj) -> str:
    """A short hash of what a cached file was computed from."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached(path: str, want: str, torch_file: bool = False) -> bool:
    """Whether ``path`` holds a cache entry stamped ``want`` (a corrupt file is no entry)."""
    if not os.path.exists(path):
        return False
    try:
        got = torch.load(path, weights_only=True)["stamp"] if torch_file else str(np.load(path)["stamp"])
    except Exception:  # noqa: BLE001 - a corrupt cache is recomputed
        return False
    return got == want


def oracle_file(preset: Table1Preset) -> str | None:
    """The oracle's weights file of a preset (None without an oracle)."""
    if not preset.oracle:
        return None
    from ltbench.eval.oracle import SHIPPED, WEIGHTS

    p = SHIPPED if preset.oracle == "phantom" else preset.oracle
    return os.path.join(p, WEIGHTS) if os.path.isdir(p) else p


def input_identity(preset: Table1Preset) -> dict:
    """What a cell depends on beyond its config: the phantom renderer's version (in-memory
    phantom only), and SHA-256s of the prior's weight files and of the oracle's. A cell or cached
    stage computed from other inputs (an upgraded ltbench, a retrained prior) is not reused."""
    from ltbench.data.phantom.render import RENDERER_VERSION
    from ltbench.prior.vae import resolve_prior
    from ltbench.utils.io import sha256_file
    from ltbench.utils.provenance import prior_weights

    o = oracle_file(preset)
    oracle = sha256_file(o)[:16] if o and os.path.isfile(o) else None
    return {"phantom_renderer": RENDERER_VERSION if preset.data_root is None else None, "prior": prior_weights(resolve_prior(preset.prior)), "oracle": oracle}


def class_split(preset: Table1Preset) -> tuple[list, list, list]:
    """(classes, head, tail) of a preset's dataset: the dataset preset's classes; the tail by
    name (``tail_classes``), by train count (``tail_below``: the classes with fewer train
    positives, a class with none cannot be augmented and stays out of both lists), or the
    dataset preset's own split; the head is every other class unless the dataset preset names
    it (the paper's five)."""
    from ltbench.data.presets import DATASETS

    ds = DATASETS[preset.dataset]
    classes = list(ds.classes)
    if preset.tail_classes:
        unknown = [c for c in preset.tail_classes if c not in classes]
        if unknown:
            raise ValueError(f"--tail-classes: {unknown} are not classes of dataset {preset.dataset!r} (it has {classes})")
        tail = [c for c in classes if c in preset.tail_classes]
        return classes, [c for c in classes if c not in tail], tail
    if preset.tail_below:
        counts = train_counts(preset)
        tail = [c for c in classes if 0 < counts[c] < preset.tail_below]
        if not tail:
            raise ValueError(f"--tail-below {preset.tail_below}: no class of {preset.dataset!r} has between 1 and {preset.tail_below - 1} train positives (train counts: {counts})")
        return classes, [c for c in classes if counts[c] >= preset.tail_below], tail
    if not ds.tail:
        raise ValueError(f"dataset {preset.dataset!r} names no tail: choose one with --tail-classes or --tail-below N")
    return classes, list(ds.head) or [c for c in classes if c not in ds.tail], list(ds.tail)


def train_counts(preset: Table1Preset) -> dict:
    """{class: train positives} from the labels alone (the in-memory phantom's, or the files')."""
    from ltbench.data.presets import DATASETS, train_counts as file_counts

    if preset.data_root is None:
        from ltbench.data.phantom import make_labels

        labels, split = make_labels(preset.phantom)
        return {c: int(labels[split == "train", k].sum()) for k, c in enumerate(DATASETS["phantom"].classes)}
    return file_counts(preset.dataset, preset.data_root)


def _safe(c: str) -> str:
    return c.replace(" ", "_")


class Context:
    """Everything the cells of one run folder share. Images are uint8 [N, H, W]; labels uint8
    [N, K]. Stages are computed on first use and cached in ``out/work``."""

    CHUNK = 512  # images rendered or read per write
    CAM_CHECK_IMAGES = 64  # train images per tail class on which every fit re-checks the CAM choice

    def __init__(self, preset: Table1Preset, out: str, progress: bool):
        from ltbench.utils.memory import StagePeaks

        self.preset, self.out, self.progress = preset, out, progress
        self.work = os.path.join(out, "work")
        self.classes, self.head, self.tail = class_split(preset)
        self.timings: dict = {}
        self.peaks = StagePeaks()  # peak RSS per stage, for run.json
        self._prior = self._oracle = self._latents = None
        self._il: dict = {}  # seed -> (model, cams, scores)
        self.il_fit_seconds: dict = {}  # seed -> the fit's one-off seconds
        self.inputs = input_identity(preset)
        from ltbench.reproduce.provenance import identity

        self.sources = identity(["table1_sources"])  # the code a cell's numbers come from (its freshness)

    @classmethod
    def from_run(cls, run: str, progress: bool = True) -> "Context":
        """The Context of an existing table1 run folder (its cached stages reused, missing ones
        recomputed): the run's own inputs (a --data/--prior/--oracle/--device given to table1),
        its preset for the rest."""
        from ltbench.reproduce.schema import read_run_info

        info = read_run_info(run)
        name = info.get("preset")
        if name not in PRESETS:
            raise ValueError(f"{run} was made with preset {name!r}, which this ltbench does not have")
        given = {k: info["config"][k] for k in ("data_root", "prior", "oracle", "device", "dataset", "tail_below") if k in info["config"]}
        if info["config"].get("tail_classes"):
            given["tail_classes"] = tuple(info["config"]["tail_classes"])
        preset = dataclasses.replace(PRESETS[name], **given)
        return cls(preset, run, progress)

    def data_key(self) -> dict:
        """What the train/test images depend on (part of every cached stage's stamp)."""
        p = self.preset
        return {"phantom": dataclasses.asdict(p.phantom), "renderer": self.inputs["phantom_renderer"], "dataset": p.dataset, "root": p.data_root, "size": p.image_size, "sample": p.train_sample}

    def cell_config(self, row: str, seed: int) -> dict:
        """The preset's cell config plus the classes it was computed on (the tail as chosen) and
        the identity of the inputs it was computed from."""
        return {**self.preset.cell_config(row, seed), "class_split": {"head": self.head, "tail": self.tail}, "inputs": self.inputs}

    def _stage(self, name: str) -> FileLock:
        os.makedirs(self.work, exist_ok=True)
        return FileLock(os.path.join(self.work, f".{name}.lock"))

    def _timed(self, key: str, t0: float) -> None:
        self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - t0, 2)

    # ---- models ----------------------------------------------------------------------
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
        return oracle_file(self.preset)

    @property
    def classifier_device(self) -> str:
        return str(self.prior.device) if self.preset.device != "cpu" else "cpu"

    @property
    def vae_batch(self) -> int:
        """Images per VAE call: 128 at 64 px, fewer at larger sizes (memory ~ batch x pixels);
        on a GPU 8x as many (16 at 512 px)."""
        scale = 8 if str(self.prior.device).startswith("cuda") else 1
        return max(1, scale * 128 * 64 * 64 // (self.preset.image_size**2))

    # ---- data --------------------------------------------------------------------------
    def load_data(self) -> None:
        """Train, val and test images and labels, as files under ``work/data``: one ``.npy`` of
        uint8 [N, S, S] per split, read a few rows at a time (``RowFile``), so no stage holds
        a split in memory; labels (small) are loaded. The phantom preset renders its images
        in chunks; with ``data_root`` a registered dataset is read from its files (the paper's
        MIMIC-CXR-LT, or the phantom written by ``ltbench data phantom``) through DataLoader
        workers, at most ``train_sample`` train rows (a seeded sample, like the paper's)."""
        from ltbench.data.rows import RowFile

        with self._stage("data"):
            folder = os.path.join(self.work, "data")
            meta = os.path.join(folder, "meta.npz")
            want = stamp(self.data_key())
            t = time.perf_counter()
            if not cached(meta, want):
                shutil.rmtree(folder, ignore_errors=True)
                labels = self._render_phantom(folder) if self.preset.data_root is None else self._read_files(folder)
                with atomic_path(meta) as tmp:  # written last: the split files before it are whole
                    np.savez(tmp, stamp=want, **{f"labels_{k}": v for k, v in labels.items()})
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

    def _render_phantom(self, folder: str) -> dict:
        from tqdm.auto import tqdm

        from ltbench.data.phantom import generate, make_labels
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
        from ltbench.data.presets import open_dataset
        from ltbench.data.rows import read_to_rows

        p = self.preset
        out = {}
        for split in ("train", "val", "test"):
            # an unreadable image is skipped (and reported by the dataset); the file holds the rest
            ds = open_dataset(p.dataset, p.data_root, split=split, image=ImageConfig(size=p.image_size, channels=1, on_error="skip"))
            idx = np.arange(len(ds))
            if split == "train" and p.train_sample and p.train_sample < len(ds):
                idx = np.sort(np.random.default_rng(0).choice(len(ds), p.train_sample, replace=False))
            out[split] = read_to_rows(ds, os.path.join(folder, f"{split}.npy"), idx, progress=self.progress, desc=f"read {split}")
        return out

    # ---- latents ----------------------------------------------------------------------
    def latents(self) -> torch.Tensor:
        """Train latents (posterior means, scaled) of the prior's VAE, cached."""
        if self._latents is None:
            with self._stage("latents"):
                self._latents = self._encode_train()
        return self._latents

    def _encode_train(self) -> torch.Tensor:
        from tqdm.auto import tqdm

        from ltbench.data.images import gray_to_unit_rgb
        from ltbench.prior.vae import vae_identity

        path = os.path.join(self.work, "latents.pt")
        self.latent_stamp = stamp({**self.data_key(), "vae": vae_identity(self.prior.path)["weights_sha256"]})
        t = time.perf_counter()
        if not cached(path, self.latent_stamp, torch_file=True):
            bs = self.vae_batch
            step = max(bs, 2**28 // (12 * self.preset.image_size**2))  # images read per chunk: <= 256 MiB as float RGB
            chunks = range(0, len(self.x_train), step)
            z = torch.cat([self.prior.encode(gray_to_unit_rgb(self.x_train[i : i + step]), batch_size=bs) for i in tqdm(chunks, desc="encode", disable=not self.progress)])
            with atomic_path(path) as tmp:
                torch.save({"latents": z, "stamp": self.latent_stamp}, tmp)
        z = torch.load(path, weights_only=True)["latents"]
        self.timings["encode_s"] = round(time.perf_counter() - t, 2)
        self.peaks.mark("encode")
        return z

    # ---- references and floors (one draw per seed) ----------------------------------------
    def fid_reference(self, seed: int = 0) -> dict:
        """Real images per tail class, at most ``fid_real_per_class`` each, drawn afresh for
        every seed (the reference set is a source of variance a user meets): on the in-memory
        phantom, freshly rendered images containing the class from seed
        ``fid_reference_seed + seed``, which the benchmark's splits never hold; on files, a
        seeded draw from the test split's images of the class. {class: uint8 [n_c, H, W]}."""
        from ltbench.data.phantom import fresh_class_sample, generate

        p = self.preset
        path = os.path.join(self.work, f"fid_reference-seed{seed}.npz")
        with self._stage(f"fid_reference-seed{seed}"):
            want = stamp({**self.data_key(), "m": p.fid_real_per_class, "seed": p.fid_reference_seed + seed})
            if not cached(path, want):
                if p.data_root is not None:
                    rng = np.random.default_rng([p.fid_reference_seed, seed])
                    ref = {}
                    for c in self.tail:
                        pos = np.flatnonzero(self.y_test[:, self.classes.index(c)] == 1)
                        ref[c] = self.x_test[np.sort(rng.permutation(pos)[: p.fid_real_per_class])]
                else:
                    cfg, idx = fresh_class_sample(p.phantom, self.tail, p.fid_real_per_class, p.fid_reference_seed + seed)
                    ref = {c: generate(cfg, indices=idx[c]).images for c in self.tail}
                with atomic_path(path) as tmp:
                    np.savez(tmp, stamp=want, **{_safe(c): v for c, v in ref.items()})
            d = np.load(path)
        return {c: d[_safe(c)] for c in self.tail}

    def heldout(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``real`` row of seed ``seed``: ``n_per_class`` held-out real images per tail class,
        in ``tail`` order, never in train, test or the FID reference, drawn afresh for every
        seed. Returns (uint8 [M, H, W], labels uint8 [M, K], targets int[M]: the tail class index
        each image stands for). On the in-memory phantom, freshly rendered from
        ``heldout_seed + seed``; on files, a seeded draw from the val split (a class with fewer
        val images gets all it has: the count is in the cell)."""
        from ltbench.data.phantom import fresh_class_sample, generate

        p = self.preset
        path = os.path.join(self.work, f"heldout-seed{seed}.npz")
        with self._stage(f"heldout-seed{seed}"):
            want = stamp({**self.data_key(), "n": p.n_per_class, "seed": p.heldout_seed + seed})
            if not cached(path, want):
                if p.data_root is not None:
                    rng = np.random.default_rng([p.heldout_seed, seed])
                    idx = [np.sort(rng.permutation(np.flatnonzero(self.y_val[:, self.classes.index(c)] == 1))[: p.n_per_class]) for c in self.tail]
                    images, labels = self.x_val[np.concatenate(idx)], self.y_val[np.concatenate(idx)]
                else:
                    cfg, by_class = fresh_class_sample(p.phantom, self.tail, p.n_per_class, p.heldout_seed + seed, distinct=True)
                    idx = [by_class[c] for c in self.tail]
                    d = generate(cfg, indices=np.concatenate(idx))
                    images, labels = d.images, d.labels
                targets = np.concatenate([np.full(len(i), self.classes.index(c)) for c, i in zip(self.tail, idx)])
                with atomic_path(path) as tmp:
                    np.savez(tmp, images=images, labels=labels, targets=targets, stamp=want)
            d = np.load(path)
        return d["images"], d["labels"], d["targets"]

    def memorisation_reference(self, seed: int = 0, round_tripped: bool = False) -> dict:
        """What "new" looks like to the memorisation check of seed ``seed``: {tail class: uint8
        [n, H, W]} real images of the class that no split, no FID reference and no ``real``
        row holds, a draw of its own (``n_per_class`` per class). On the phantom, freshly
        rendered from ``heldout_seed + MEMORISATION_REFERENCE_OFFSET + seed``; on files, the
        next ``n_per_class`` val images of the permutation that drew the ``real`` row (disjoint
        from it; a class with few val images may get none, and is then untested).
        ``round_tripped``: the same images through the prior's autoencoder, the reference for
        rows whose images are decoded latents (a round trip's smoothing brings any image
        closer to train in pixels; a decoded sample is compared with decoded real images)."""
        from ltbench.data.phantom import fresh_class_sample, generate

        p = self.preset
        path = os.path.join(self.work, f"memorisation_reference-seed{seed}.npz")
        with self._stage(f"memorisation_reference-seed{seed}"):
            want = stamp({**self.data_key(), "n": p.n_per_class, "seed": p.heldout_seed + MEMORISATION_REFERENCE_OFFSET + seed})
            if not cached(path, want):
                if p.data_root is not None:
                    rng = np.random.default_rng([p.heldout_seed, seed])  # the real row's permutation, its next n
                    ref = {c: self.x_val[np.sort(rng.permutation(np.flatnonzero(self.y_val[:, self.classes.index(c)] == 1))[p.n_per_class : 2 * p.n_per_class])] for c in self.tail}
                else:
                    cfg, by_class = fresh_class_sample(p.phantom, self.tail, p.n_per_class, p.heldout_seed + MEMORISATION_REFERENCE_OFFSET + seed, distinct=True)
                    ref = {c: generate(cfg, indices=by_class[c]).images for c in self.tail}
                with atomic_path(path) as tmp:
                    np.savez(tmp, stamp=want, **{_safe(c): v for c, v in ref.items()})
            d = np.load(path)
            ref = {c: d[_safe(c)] for c in self.tail}
        if not round_tripped:
            return ref
        path = os.path.join(self.work, f"memorisation_reference-seed{seed}-vae.npz")
        with self._stage(f"memorisation_reference-seed{seed}-vae"):
            from ltbench.eval.roundtrip import round_trip
            from ltbench.prior.vae import vae_identity

            want = stamp({"reference": want, "vae": vae_identity(self.prior.path)["weights_sha256"]})
            if not cached(path, want):
                trip = {c: round_trip(self.prior, v, batch_size=self.vae_batch) if len(v) else v for c, v in ref.items()}
                with atomic_path(path) as tmp:
                    np.savez(tmp, stamp=want, **{_safe(c): v for c, v in trip.items()})
            d = np.load(path)
        return {c: d[_safe(c)] for c in self.tail}

    # ---- the classifier's warm start ----------------------------------------------------
    def classifier_init(self, seed: int) -> dict | None:
        """The seed's shared DenseNet121 starting point (``warm_steps`` on the real train
        images alone), or None when every row trains from scratch."""
        from ltbench.eval.classifier import warm_start

        if self.preset.classifier.warm_steps < 1:
            return None
        path = os.path.join(self.work, "classifier", f"warm-seed{seed}.pt")
        with self._stage(f"warm-seed{seed}"):
            warm = {k: v for k, v in dataclasses.asdict(self.preset.classifier).items() if k not in ("steps", "finetune_lr", "eval_batch_size", "generated_share")}
            want = stamp({**self.data_key(), "classifier": warm, "seed": seed})
            if not cached(path, want, torch_file=True):
                t = time.perf_counter()
                state = warm_start(self.x_train, self.y_train, self.preset.classifier, seed=seed, device=self.classifier_device, progress=self.progress, desc=f"densenet121 warm start s{seed}")
                with atomic_path(path) as tmp:
                    torch.save({"state": state, "stamp": want}, tmp)
                self._timed("classifier_warm_s", t)
                self.peaks.mark("classifier_warm")
            return torch.load(path, weights_only=True)["state"]

    # ---- the fsa-il fit (one per seed) -------------------------------------------------------
    def il_fit(self, seed: int = 0):
        """The fsa-il fit of seed ``seed`` (iterated learning with ``preset.il_for(seed)``, then
        the CAMs of the preset's CAM choice) on the train latents, shared by that seed's fsa-il
        rows; cached in ``work/fit-seed<seed>/`` (IL resumes per generation). Every seed fits its
        own generator: refitting is a source of variance a user meets. Returns (model, cams,
        scores)."""
        if seed not in self._il:
            self.latents()
            with self._stage(f"il-seed{seed}"):
                self._il[seed] = self._fit_il(seed)
        return self._il[seed]

    def il_fit_identity(self, seed: int) -> dict:
        """What names the fit of seed ``seed``: its IL config, the latents and the CAM choice."""
        f = self.preset.fusion
        return {"il": dataclasses.asdict(self.preset.il_for(seed)), "latents": self.latent_stamp, "cam": [f.cam, f.cam_layers]}

    def _fit_il(self, seed: int):
        from ltbench.augment import make_augmenter

        t = time.perf_counter()
        z = self.latents()
        work = os.path.join(self.work, f"fit-seed{seed}")
        stamp_file = os.path.join(work, "stamp.json")
        want = stamp(self.il_fit_identity(seed))
        if os.path.exists(stamp_file):
            with open(stamp_file) as f:
                if json.load(f) != want:
                    shutil.rmtree(work)  # fitted on other latents or settings
        os.makedirs(work, exist_ok=True)
        atomic_write_json(stamp_file, want)
        seconds_file = os.path.join(work, "fit_seconds.json")
        fresh = not os.path.exists(seconds_file)
        fsa = make_augmenter("fsa-il", classes=self.classes, head=self.head, tail=self.tail, il=self.preset.il_for(seed), fusion=self.preset.fusion, work_dir=work, progress=self.progress, device=self.preset.device).fit(z, self.y_train)
        self._timed("il_fit_s", t)
        self.peaks.mark("il_fit")
        if fresh:  # the one-off cost of the seed's fsa-il rows, kept when the fit is reused
            atomic_write_json(seconds_file, {"il_and_cams_seconds": round(time.perf_counter() - t, 2), "stamp": want})
        with open(seconds_file) as f:
            self.il_fit_seconds[seed] = json.load(f)["il_and_cams_seconds"]
        return fsa.model_, fsa.cams_, fsa.scores_

    def cam_check(self, seed: int) -> dict | None:
        """Does the preset's CAM choice still localise best on the fit of seed ``seed``? Every CAM
        choice on that fit, scored as the diagnostics score them (the mean over tail classes of
        M^S's two lifts over a random mask of its area) on up to ``CAM_CHECK_IMAGES`` train
        images per tail class; cached in ``work/fit-seed<seed>/cam_check.json``. None on data
        without ground-truth masks."""
        from ltbench.data.phantom import split_masks
        from ltbench.eval.localisation import localise
        from ltbench.method.cam import CAM_LAYERS, CAM_METHODS, batch_cams

        if self.preset.data_root is not None:
            return None
        model, _, _ = self.il_fit(seed)
        path = os.path.join(self.work, f"fit-seed{seed}", "cam_check.json")
        with self._stage(f"cam-check-seed{seed}"):
            want = stamp({**self.il_fit_identity(seed), "n": self.CAM_CHECK_IMAGES, "tau_h": self.preset.fusion.tau_h})
            if os.path.exists(path):
                with open(path) as f:
                    got = json.load(f)
                if got.get("stamp") == want:
                    return got
            t = time.perf_counter()
            z, y, prev = self.latents(), self.y_train, (self.y_train > 0).mean(0)
            rng = np.random.default_rng([self.preset.il.seed, seed, 17])
            picks = {c: np.sort(rng.permutation(np.flatnonzero(y[:, self.classes.index(c)] == 1))[: self.CAM_CHECK_IMAGES]) for c in self.tail}
            masks = {c: split_masks(self.preset.phantom, "train", picks[c], self.classes.index(c)) for c in self.tail}
            choices = []
            for method in CAM_METHODS:
                for layers in CAM_LAYERS:
                    lifts = []
                    for c in self.tail:
                        r = picks[c]
                        cams = batch_cams(model, z[torch.from_numpy(r)], y[r], prev, method, layers)[0]  # on the model's device
                        loc = localise(cams, self.preset.fusion.tau_h, masks[c])
                        lifts.append((loc["finding_in_ms_minus_random"]["mean"] + loc["ms_on_finding_minus_random"]["mean"]) / 2)
                    choices.append({"cam": method, "layers": layers, "score": float(np.mean(lifts))})
            best = max(choices, key=lambda e: e["score"])
            f = self.preset.fusion
            out = {"stamp": want, "images_per_class": self.CAM_CHECK_IMAGES, "choices": choices, "best": [best["cam"], best["layers"]], "default": [f.cam, f.cam_layers], "default_is_best": [best["cam"], best["layers"]] == [f.cam, f.cam_layers]}
            atomic_write_json(path, out)
            self._timed("cam_check_s", t)
        return out

    # ---- the oracle's features of the train images (memorisation) ---------------------------
    def train_features(self):
        """The oracle's penultimate features of every train image, Tensor[N, F], computed once per
        run and cached (``work/train_features.pt``); None without an oracle."""
        if self.oracle is None:
            return None
        if getattr(self, "_train_features", None) is None:
            path = os.path.join(self.work, "train_features.pt")
            with self._stage("train_features"):
                want = stamp({**self.data_key(), "oracle": self.inputs["oracle"]})
                if not cached(path, want, torch_file=True):
                    t = time.perf_counter()
                    with torch.no_grad():
                        f = torch.cat([torch.as_tensor(self.oracle.features(self.x_train[i : i + 1024])).float() for i in range(0, len(self.x_train), 1024)])
                    with atomic_path(path) as tmp:
                        torch.save({"features": f, "stamp": want}, tmp)
                    self._timed("train_features_s", t)
                self._train_features = torch.load(path, weights_only=True)["features"]
        return self._train_features

    # ---- the oracle on the test split --------------------------------------------------------
    def oracle_test_scores(self) -> dict | None:
        """The oracle's per-class average precision and head/tail mAP on this run's test split:
        the ceiling the benchmark's classifier is measured against (None without an oracle)."""
        from ltbench.eval.classifier import average_precisions, head_tail_map

        if self.oracle is None or not hasattr(self, "x_test"):
            return None
        probs = np.concatenate([self.oracle.probs(self.x_test[i : i + 1024]) for i in range(0, len(self.x_test), 1024)])
        ap = average_precisions(self.y_test, probs, self.classes, required=self.head + self.tail)
        return {"test_average_precision": ap, **head_tail_map(ap, self.head, self.tail)}


__all__ = ["MEMORISATION_REFERENCE_OFFSET", "Context", "cached", "input_identity", "oracle_file", "stamp", "state_digest"]
