"""``fsa-il``: the paper's augmenter (feature-space augmentation with iterated learning).

fit = iterated learning on the latents (``ILConfig``), class activation maps of every example
(``FusionConfig.cam`` on ``cam_layers``: GradCAM++ on every block after the first by default), then
for each tail class ``n_per_class`` fusions of a tail example with a head partner
(``FusionConfig``), decoded by D and optionally refined @k through the prior.

``device`` (auto, cpu, cuda, cuda:N) is where iterated learning, the CAMs' network passes,
partner search and fusion run; the prior runs where it was loaded. Inputs and outputs are CPU
tensors (the augmenter contract), whatever the device."""

import os
import tempfile
from dataclasses import asdict

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ltbench import ops
from ltbench.augment import Augmenter, check_head_tail, check_xy, register_augmenter
from ltbench.method.cam import compute_cams
from ltbench.method.fusion import FusionConfig, choose_partners, fuse_authors, fuse_batch, thresholds
from ltbench.method.il import ILConfig, label_matrix, train_il
from ltbench.utils.device import resolve_device
from ltbench.utils.dist import gather_shares, my_share, sample_generator


@register_augmenter
class FsaIL(Augmenter):
    name = "fsa-il"

    def __init__(self, classes, head, tail, il: ILConfig = ILConfig(), fusion: FusionConfig = FusionConfig(), prior=None, oracle=None, work_dir: str | None = None, val_fraction: float = 0.1, progress: bool = False, fitted=None, device="auto", precision: str = "auto"):
        """``fitted``: ``(model, cams, scores)`` of an earlier fit on the same ``X`` (rows in the
        same order) to reuse, e.g. one IL fit shared by the @0/@1/@5 rows; None fits here.
        ``device``: auto, cpu, cuda or cuda:N, resolved when fitting (``device_`` and
        ``ops_backend_`` record what ran). ``precision``: iterated learning's autocast
        (``train_il``); CAMs and fusion run in float32."""
        self.classes, self.head, self.tail = list(classes), list(head), list(tail)
        self.fitted = fitted
        self.device, self.precision = device, precision
        self.il, self.fusion, self.prior, self.oracle = il, fusion, prior, oracle
        self.work_dir, self.val_fraction, self.progress = work_dir, val_fraction, progress

    def get_params(self) -> dict:
        return {"classes": self.classes, "head": self.head, "tail": self.tail, "il": asdict(self.il), "fusion": asdict(self.fusion), "val_fraction": self.val_fraction}

    def fit(self, X, y):
        """Iterated learning on ``X`` (a ``val_fraction`` held out, drawn with ``il.seed``) in
        ``work_dir/il`` (resumable), then the CAMs of every row (``fusion.cam``,
        ``fusion.cam_layers``) in ``work_dir/cams``.
        Sets ``model_``, ``cams_``, ``scores_``, ``device_``, ``ops_backend_``; returns self."""
        X, y = check_xy(X, y)
        dev = self._resolve()
        work = self.work_dir or tempfile.mkdtemp(prefix="ltbench-fsa-il-")
        val = np.random.default_rng(self.il.seed).random(len(X)) < self.val_fraction
        rows = torch.arange(len(X), device="cpu")  # dataset row ids, host side like X
        train = TensorDataset(X[~val], torch.from_numpy(y[~val]).float(), rows[~val])
        valid = TensorDataset(X[val], torch.from_numpy(y[val]).float(), rows[val]) if val.any() else None
        self.model_ = train_il(train, valid, self.il, os.path.join(work, "il"), progress=self.progress, device=dev, precision=self.precision)
        full = TensorDataset(X, torch.from_numpy(y).float(), rows)
        self.cams_, self.scores_ = compute_cams(self.model_, full, os.path.join(work, "cams"), progress=self.progress, method=self.fusion.cam, layers=self.fusion.cam_layers, device=dev)
        return self

    def _resolve(self) -> torch.device:
        dev = resolve_device(self.device)
        self.device_, self.ops_backend_ = str(dev), ops.backend_for(dev)
        return dev

    def _generate(self, X, y):
        check_head_tail(self.classes, self.head, self.tail)  # before the IL fit, not after it
        if self.fitted is not None:
            self.model_, self.cams_, self.scores_ = self.fitted
            if len(self.cams_) != len(X):
                raise ValueError(f"the fitted CAMs cover {len(self.cams_)} examples, X has {len(X)}: fit on the same data")
        else:
            self.fit(X, y)
        full = TensorDataset(X, torch.from_numpy(y).float(), torch.arange(len(X), device="cpu"))
        return generate_fusions(self.model_, full, self.cams_, self.scores_, self.classes, self.head, self.tail, self.fusion, prior=self.prior, oracle=self.oracle, record=self, progress=self.progress, device=self._resolve())


def generate_fusions(model, dataset, cams, scores, classes, head, tail, cfg: FusionConfig, prior=None, oracle=None, record=None, progress: bool = False, keep_unrefined: bool = False, device="auto"):
    """``cfg.n_per_class`` fused latents per tail class. Returns ``(z float32[M, C, H, W],
    labels uint8[M, K])``, a CPU tensor and a NumPy array; with ``record`` its ``partners_``
    gets (tail_pos, partner_pos, head_class, tail_class) per sample, ``thresholds_`` the
    (tau_h, tau_l) used and, with ``keep_unrefined``, ``unrefined_``: this process's fused
    latents before refinement (CPU).

    ``device`` (auto, cpu, cuda, cuda:N): where the kNN partner search, S, the masks, the
    fusion and D run (the model is moved there, in place, unless ``cfg.decoder`` makes a copy);
    refinement runs on the prior's device, and ``oracle`` gets CPU latents.

    Sample i of tail class c draws its mask M^R (and p, SDEdit's noise) from its own seed,
    ``sample_seed(cfg.seed, c, i)``; the tail examples and partners come from one stream
    seeded by ``cfg.seed``. So a sample depends neither on the batch size nor on the number
    of processes: in a torchrun process group each rank fuses, refines and labels every W-th
    sample and all ranks gather the whole set."""
    from tqdm.auto import tqdm

    check_head_tail(classes, head, tail)  # tau, p and the rest: FusionConfig's own field checks
    dev = resolve_device(device)
    labels = label_matrix(dataset).astype(np.uint8)
    idx = {c: i for i, c in enumerate(classes)}
    head_i, tail_i = [idx[c] for c in head], [idx[c] for c in tail]
    rng = np.random.default_rng(cfg.seed)
    tau_h, tau_l = thresholds(cfg, rng)
    if cfg.refine_steps and prior is None:
        raise ValueError("refine_steps > 0 needs a prior (e.g. prior='phantom' or a RoentGen folder)")
    if cfg.label_policy == "oracle" and oracle is None:
        raise ValueError("label_policy='oracle' needs an oracle: a callable latents -> class probabilities")
    allowed = labels[:, tail_i].max(1) == 0 if cfg.partner_candidates == "no-tail" else None
    if cfg.decoder == "train-batch2":
        import copy

        model = copy.deepcopy(model)  # train-mode BatchNorm updates running statistics: never the caller's model
    model.to(dev)
    out_z, out_y, meta, pre = [], [], [], []
    n = cfg.n_per_class
    mine = my_share(n * len(tail_i))  # this rank's samples (flat index j * n + i); all of them in one process
    for j, c in enumerate(tqdm(tail_i, desc="fuse", disable=not progress)):
        pos = np.flatnonzero(labels[:, c] == 1)
        if len(pos) == 0:
            raise ValueError(f"tail class '{classes[c]}' has no examples to augment")
        # the class's tail examples and partners: drawn from ``rng`` on every rank alike
        picks = np.concatenate([rng.permutation(pos) for _ in range(-(-n // len(pos)))])[:n]
        partners, hclass = choose_partners(picks, labels, cams, scores, head_i, cfg.partner_rule, cfg.knn, rng, allowed=allowed, class_pos=pos, device=dev)
        meta += [(int(a), int(b), int(hc), c) for a, b, hc in zip(picks, partners, hclass)]
        sel = mine[mine // n == j] % n
        for s in range(0, len(sel), cfg.batch_size):
            b = sel[s : s + cfg.batch_size]
            t, h = picks[b], partners[b]
            # sample i of class c draws its own randomness: M^R, p, SDEdit's noise
            gens = [sample_generator(cfg.seed, c, int(i)) for i in b]
            z_t = torch.stack([dataset[int(i)][0] for i in t])
            z_h = torch.stack([dataset[int(i)][0] for i in h])
            # drawn on the CPU from each sample's generator: the same p on every device
            p = cfg.p if cfg.p_mode == "fixed" else torch.stack([torch.rand((), generator=g, device=g.device) for g in gens])
            fuse = fuse_authors if cfg.decoder == "train-batch2" else fuse_batch
            z_f = fuse(model, z_t, z_h, torch.from_numpy(np.asarray(cams[t], np.float32)), torch.from_numpy(np.asarray(cams[h], np.float32)), tau_h, tau_l, p, gens, random_masks=cfg.masks == "random", device=dev)
            union = labels[t] | labels[h]
            if cfg.label_policy == "union":
                y_new = union
            elif cfg.label_policy == "tail":
                y_new = np.zeros_like(union)
                y_new[:, c] = 1
            else:
                y_new = None
            if keep_unrefined:
                pre.append(z_f.cpu())
            if cfg.refine_steps:
                prompts = refine_prompts(classes, c, union, cfg.refine_prompt)
                noise = torch.stack([torch.randn(z_f.shape[1:], generator=g, device=g.device) for g in gens]) if cfg.refine_mode == "sdedit" else None
                z_f = prior.refine(z_f, prompts, cfg.refine_steps, steps=cfg.refine_schedule, guidance=cfg.refine_guidance, mode=cfg.refine_mode, noise=noise)
            z_f = z_f.cpu()  # refine returns CPU latents already; the fusion's come from the device
            if y_new is None:
                y_new = (np.asarray(oracle(z_f)) > 0.5).astype(np.uint8)
            out_z.append(z_f)
            out_y.append(np.asarray(y_new, np.uint8))
    if record is not None:
        record.partners_ = np.asarray(meta, dtype=np.int64).reshape(-1, 4)
        record.thresholds_ = (tau_h, tau_l)
        if keep_unrefined:
            record.unrefined_ = torch.cat(pre) if pre else None
    total = n * len(tail_i)
    if total == 0:
        shape = tuple(dataset[0][0].shape)
        return torch.zeros((0, *shape), device="cpu"), np.zeros((0, len(classes)), np.uint8)
    shape = tuple(dataset[0][0].shape)
    part = {"z": torch.cat(out_z) if out_z else torch.zeros((0, *shape), device="cpu"), "y": np.concatenate(out_y) if out_y else np.zeros((0, len(classes)), np.uint8)}
    full = gather_shares(part, total)
    return full["z"], full["y"].astype(np.uint8)


def refine_prompts(classes, c: int, union: np.ndarray, mode: str) -> list:
    """Refinement prompts for samples made for tail class ``c``: its name (``tail``, the paper:
    the diffusion model is asked for the tail finding) or the names of the union of both
    examples' labels (``union``, the authors' code), one per row of ``union`` uint8[B, K]."""
    if mode == "tail":
        return [classes[c]] * len(union)
    return [" ".join(classes[k] for k in np.flatnonzero(row)) for row in union]
