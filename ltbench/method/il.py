"""Stage 1: iterated learning with simplicial embeddings (Sec. 3.1, Eq. 1-5).

One generation = an interaction phase (S, D, C trained on ``lam * L_R + (1 - lam) * L_C``)
then, except after the last generation, an imitation phase: the student becomes a frozen
teacher, a freshly initialised student with a new optimiser learns to imitate one channel
drawn per position from the teacher's channel softmax (``ops.channel_sample``) under
``ops.imitation_bce``. Paper and authors' code differ on the reconstruction loss (MSE vs L1)
and the weighting (lam vs a plain sum); both are options, defaults from
``docs/method.md``.

After each interaction phase BatchNorm's running statistics are re-estimated on a pass over
(up to ``bn_recalibration``) train rows: with momentum 0.1 and few batches per epoch they lag
the weights (the decoder still normalises with the statistics of a student it no longer sees,
and in eval mode D(S(z)) collapsed towards the mean latent), and every later use of the model
(validation, CAMs, fusion) is in eval mode.

Each generation ends with a checkpoint; a killed run resumes after the last finished
generation and ends with the same weights. Losses, and validation reconstruction, mAP and
sparsity (the mean over positions of the largest channel probability of S(z): 1 = one-hot
codes) of the model after its interaction phase, go to ``log.jsonl`` (append-only, one line
per generation).

Under torchrun (``ltbench train-il`` joins the process group) rank r of W takes rows r, r + W,
... of every batch one process would draw (same sampler, same generator: the global batch is
``batch_size``), the imitation uniforms are one process's, sliced the same way, and after
every backward pass (both phases) the gradients are all-reduced, weighted by each rank's
rows, into the gradient of the global batch's mean loss; BatchNorm's running statistics are
averaged over the ranks after each phase. Every rank so holds the same weights, and only
rank 0 writes. The one difference from one process: BatchNorm normalises each rank's part of
the batch with that part's statistics (SyncBatchNorm runs on GPUs only); a final batch
smaller than W is left out.

Devices (``device``: auto, cpu, cuda, cuda:N; ``docs/gpu.md``): the model is built and
initialised on the CPU and then moved, and every fresh student of an imitation phase is
re-initialised on the CPU too, so the initial weights of every generation are the same
numbers on every device. The batch order, the imitation uniforms and the BatchNorm
recalibration rows come from one CPU ``torch.Generator`` (drawn there, then copied to the
device: B x H x W uniforms per step, 1/C' of the logits' size), so they do not depend on the
device either. Batches are read into pinned memory and copied asynchronously on CUDA. With
``precision="auto"`` the networks run under bfloat16 autocast on a CUDA device (float32 on the
CPU, bit-identical to earlier releases); the losses, the channel softmax draw and the imitation
BCE always get float32 inputs (see ``train_il``).
"""

import dataclasses
import glob
import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ltbench import ops
from ltbench.method.networks import UNetCodec, make_classifier, reset_parameters, unet_depth
from ltbench.utils.device import autocast, autocast_dtype, channels_last, loader_kwargs, module_device, no_autocast, resolve_device, to_device
from ltbench.utils.dist import all_reduce_sum_, average_buffers, group_rank_world, is_main, sum_over_ranks
from ltbench.utils.io import atomic_path, check_stage_inputs, write_stage_inputs

from ltbench.config import Config, opt

log = logging.getLogger("ltbench.method.il")


@dataclass(frozen=True)
class ILConfig(Config):
    sparse_channels: int = opt(64, "C', the simplex size per position (paper and code: 64)", ge=2, le=4096)
    generations: int = opt(20, "authors' code", ge=1, le=10_000)
    interaction_epochs: int = opt(1, "per generation (authors' code)", ge=1, le=10_000)
    imitation_epochs: int = opt(1, "per generation (authors' code)", ge=1, le=10_000)
    lam: float = opt(0.5, "L = lam * L_R + (1 - lam) * L_C; 0.5 = the code's plain sum, halved", ge=0, le=1)
    recon: str = opt("mse", "\"mse\" (paper) or \"l1\" (authors' code)", choices=("mse", "l1"))
    classifier: str = opt("small", "\"small\" (CPU), \"vgg11\" (code's default) or \"densenet121\"")
    ngf: int = opt(64, "U-Net base width (pix2pix / authors' code)", ge=1, le=1024)
    max_depth: int = opt(6, "U-Net levels, capped by the latent grid (authors' code: 6)", ge=1, le=16)
    lr: float = opt(1e-4, "AdamW, authors' code", gt=0, le=10)
    weight_decay: float = opt(1e-2, "AdamW, authors' code", ge=0, le=10)
    batch_size: int = opt(256, "authors' code", ge=1, le=1 << 20)
    lr_step: int = opt(10, "StepLR on D and C every this many interaction epochs (code)", ge=1)
    lr_gamma: float = opt(0.1, "StepLR factor (code)", gt=0, le=1)
    pos_weight: bool = opt(True, "class-balanced pos_weight_k = N / (n_k K), authors' code")
    seed: int = opt(0, "init, batch order, imitation draws", ge=0)
    num_workers: int = opt(0, "DataLoader workers over the latent store (0: in the main process)", ge=0, le=256)
    bn_recalibration: int = opt(4096, "after each interaction phase, BatchNorm statistics re-estimated on this many train rows (0: off)", ge=0)

    def __post_init__(self):
        if self.classifier not in ("small", "vgg11", "densenet121"):
            raise ValueError(f"--classifier must be one of ('small', 'vgg11', 'densenet121'), got {self.classifier!r}")


# CPU preset for CXR-Phantom-LT (4x16x16 latents): narrower U-Nets, fewer generations and a
# higher rate than the authors' GPU settings, so the default benchmark fits a 2-core budget.
IL_PRESETS = {
    "paper": ILConfig(classifier="vgg11"),
    "phantom": ILConfig(generations=10, ngf=32, max_depth=4, lr=1e-3, classifier="small"),
}


class ILModel(nn.Module):
    """S, D and C together. ``sparse(z)`` is the channel softmax of S (Eq. 1)."""

    def __init__(self, latent_shape, n_classes: int, cfg: ILConfig):
        super().__init__()
        c, h, w = latent_shape
        depth = unet_depth(min(h, w), cfg.max_depth)
        self.latent_shape, self.n_classes = tuple(latent_shape), n_classes
        self.student = UNetCodec(c, cfg.sparse_channels, cfg.ngf, depth)
        self.decoder = UNetCodec(cfg.sparse_channels, c, cfg.ngf, depth)
        self.classifier = make_classifier(cfg.classifier, cfg.sparse_channels, n_classes, min(h, w))

    def sparse(self, z: torch.Tensor) -> torch.Tensor:
        """Tensor[B, C, H, W] -> Tensor[B, C', H, W], a probability vector per position."""
        return torch.softmax(self.student(z), dim=1)

    def forward(self, z: torch.Tensor):
        s = self.sparse(z)
        return s, self.decoder(s), self.classifier(s)


class _RankOfGlobalBatch(torch.utils.data.Sampler):
    """Rank r's part ``b[r::W]`` of every batch ``b`` that one process would draw (the same
    BatchSampler over the same RandomSampler and generator), so W processes see exactly one
    process's global batches. A final batch smaller than W is left out."""

    def __init__(self, dataset, batch_size: int, gen: torch.Generator, rank: int, world: int):
        from torch.utils.data import BatchSampler, RandomSampler

        self.inner = BatchSampler(RandomSampler(dataset, generator=gen), batch_size, drop_last=False)
        self.rank, self.world = rank, world

    def __iter__(self):
        for b in self.inner:
            if len(b) < self.world:
                return
            yield b[self.rank :: self.world]

    def __len__(self) -> int:
        return len(self.inner)


def _loader(dataset, cfg: ILConfig, shuffle: bool, gen: torch.Generator, device: torch.device):
    rank, world = group_rank_world()
    kw = {"num_workers": cfg.num_workers, **loader_kwargs(device)}
    if world > 1 and shuffle:
        return DataLoader(dataset, batch_sampler=_RankOfGlobalBatch(dataset, cfg.batch_size, gen, rank, world), generator=gen, **kw)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=shuffle, generator=gen if shuffle else None, **kw)


def _global_sizes(n: int, batch_size: int, world: int) -> list:
    """The global batch sizes of one epoch (the last one dropped when smaller than ``world``)."""
    sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    return [b for b in sizes if b >= world]


def label_matrix(dataset) -> np.ndarray:
    """float32[N, K] labels of a LatentStore or a TensorDataset(z, y)."""
    if hasattr(dataset, "labels") and hasattr(dataset, "rows"):
        return dataset.labels[dataset.rows]
    return dataset.tensors[1].numpy()


def data_fingerprint(dataset) -> dict | None:
    """What identifies the rows IL trains on (the ``il.inputs.json`` of a run): a latent store
    by its identity, shard checksums and selected rows; an in-memory ``TensorDataset`` by the
    SHA-256 of its tensors."""
    import hashlib

    if dataset is None:
        return None
    manifest = getattr(dataset, "manifest", None)
    if manifest is not None:  # a LatentStore
        shards = hashlib.sha256(json.dumps(manifest.get("shard_sha256"), sort_keys=True).encode()).hexdigest()
        rows = hashlib.sha256(np.ascontiguousarray(dataset.rows, dtype=np.int64).tobytes()).hexdigest()
        return {"store": os.path.abspath(dataset.root), "identity": manifest.get("identity"), "shards_sha256": shards, "rows_sha256": rows, "n": len(dataset)}
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        h = hashlib.sha256()
        for t in tensors:
            a = np.ascontiguousarray(t.detach().cpu().numpy())
            h.update(str((a.shape, a.dtype.str)).encode())
            h.update(memoryview(a).cast("B"))
        return {"tensors_sha256": h.hexdigest(), "n": len(dataset)}
    return {"type": type(dataset).__name__, "n": len(dataset)}


def _recon(cfg, a, b):
    return F.mse_loss(a, b) if cfg.recon == "mse" else F.l1_loss(a, b)


@torch.no_grad()
def evaluate(model: ILModel, dataset, cfg: ILConfig, device=None, amp: torch.dtype | None = None) -> dict:
    """Validation reconstruction loss, classifier mAP (mean AP over classes with positives) and
    sparsity (mean largest channel probability of S(z)), in eval mode, on ``device`` (None:
    the model's) with the networks under autocast ``amp`` (None: float32)."""
    from sklearn.metrics import average_precision_score

    dev = module_device(model) if device is None else resolve_device(device)
    model.eval()
    scores, labels, rec, top = [], [], 0.0, 0.0
    for z, y, _ in DataLoader(dataset, batch_size=cfg.batch_size, **loader_kwargs(dev)):
        z = to_device(z, dev)
        with autocast(dev, amp):
            s, zr, logits = model(z)
        rec += float(_recon(cfg, zr.float(), z)) * len(z)
        top += float(s.float().amax(1).mean()) * len(z)
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
        labels.append(y.numpy())
    s, y = np.concatenate(scores), np.concatenate(labels)
    aps = [average_precision_score(y[:, k], s[:, k]) for k in range(y.shape[1]) if 0 < y[:, k].sum()]
    n = max(len(y), 1)
    return {"recon": rec / n, "mAP": float(np.mean(aps)) if aps else float("nan"), "classes_scored": len(aps), "sparsity": top / n}


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset, cfg: ILConfig, gen: torch.Generator, device=None, amp: torch.dtype | None = None) -> None:
    """Re-estimate every BatchNorm's running statistics on up to ``cfg.bn_recalibration`` train
    rows (a seeded sample drawn from ``gen``): a cumulative average over batches in train mode,
    no gradient. Under torchrun every rank runs it on the same rows in the same batches (a
    forward pass, cheap next to training): sharding it would average per-rank variances, which
    are not one process's (the 2-process test saw the imitation loss move by 7e-5). ``gen`` is
    the CPU generator of the fit (the rows do not depend on the device); batches go to
    ``device`` (None: the model's)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or cfg.bn_recalibration < 1:
        return
    dev = module_device(model) if device is None else resolve_device(device)
    rows = torch.randperm(len(dataset), generator=gen, device=gen.device)[: cfg.bn_recalibration].tolist()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts alike
    model.train()
    sub = torch.utils.data.Subset(dataset, rows)
    for z, _, _ in DataLoader(sub, batch_size=cfg.batch_size, num_workers=cfg.num_workers, **loader_kwargs(dev)):
        if len(z) > 1:
            with autocast(dev, amp):
                model(to_device(z, dev))
    for m, mom in zip(bns, saved):
        m.momentum = mom


def _average_gradients(module: nn.Module, world: int, n_local: int, n_global: int) -> None:
    """Make every rank's gradient the gradient of the global batch's mean loss: each rank's
    (a mean over its ``n_local`` rows) weighted by n_local / n_global, summed over the group
    (on the gradients' own device: NCCL on GPUs, one flattened all-reduce per dtype)."""
    if world > 1:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        for grad in grads:
            grad *= n_local / n_global
        all_reduce_sum_(grads)


def _checkpoint_path(out: str, g: int) -> str:
    return os.path.join(out, "checkpoints", f"gen-{g:03d}.pt")


class ILDivergedError(RuntimeError):
    """A loss of the IL fit became NaN or infinite (a learning rate too high, bad latents)."""


def _check_finite(loss: torch.Tensor, what: str, generation: int, out: str) -> None:
    if not bool(torch.isfinite(loss.detach())):
        raise ILDivergedError(
            f"iterated learning diverged: the {what} loss is {float(loss.detach())} in generation {generation} "
            f"(checkpoints of the finished generations are in {out}/checkpoints; lower --lr or check the latents for NaN)"
        )


def _move(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` on ``device``, channels-last where ``channels_last(device)`` (CUDA)."""
    module.to(device)
    if channels_last(device):
        module.to(memory_format=torch.channels_last)
    return module


def _reinitialise_on_cpu(module: nn.Module, device: torch.device) -> None:
    """Fresh weights from the CPU's global generator (seeded by the caller), then back on
    ``device``: re-initialised in place on a GPU they would come from the GPU's generator and
    differ from a CPU run's. A no-op move on the CPU."""
    module.to("cpu")
    reset_parameters(module)
    _move(module, device)


def train_il(train, val, cfg: ILConfig, out: str, progress: bool = True, device="auto", precision: str = "auto") -> ILModel:
    """Iterated learning on ``train`` (items ``(z [C, H, W], y [K], row)``), validated on ``val``.
    Writes ``out/checkpoints/gen-NNN.pt``, ``out/log.jsonl``, ``out/config.json`` (with the
    device and ``ops.backend_for(device)``) and ``out/model.pt`` (the final S, D, C). Resumes
    after the last finished generation (also on another device). Returns the model, in eval
    mode, on ``device``.

    ``device``: auto, cpu, cuda, cuda:N (``ltbench.utils.device.resolve_device``).
    ``precision``: autocast of the S, D and C passes, ``auto`` (bfloat16 on CUDA, float32 on
    the CPU), ``fp32`` or ``bf16`` (float16 is refused: its gradients would need a loss
    scaler). Always float32, whatever ``precision``: the reconstruction and classification
    losses (their inputs are cast up), the teacher's logits before ``ops.channel_sample`` (a
    cumulative softmax in bfloat16 moves draws by up to 2^-8 in probability), and the student's
    logits into ``ops.imitation_bce`` (its log is clamped at -100 and its gradient floors
    p (1 - p) at 1e-12, which float16 flushes to 0). Weights and optimiser state stay float32."""
    from tqdm.auto import tqdm

    rank, world = group_rank_world()
    if len(train) == 0:
        raise ValueError("the training set of iterated learning is empty (check --split)")
    dev = resolve_device(device)
    amp = autocast_dtype(precision, dev, allow_fp16=False)
    z0 = train[0][0]
    y_all = label_matrix(train)
    n, k = y_all.shape
    torch.manual_seed(cfg.seed)
    model = _move(ILModel(tuple(z0.shape), k, cfg), dev)  # initialised on the CPU, then moved
    pos = y_all.sum(0)
    pos_weight = torch.tensor(n / (np.maximum(pos, 1) * k), dtype=torch.float32, device=dev) if cfg.pos_weight else None
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)  # batch order, uniforms, recalibration rows

    def optimisers():
        o_s = torch.optim.AdamW(model.student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        o_dc = torch.optim.AdamW(list(model.decoder.parameters()) + list(model.classifier.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)
        return o_s, o_dc, torch.optim.lr_scheduler.StepLR(o_dc, cfg.lr_step, cfg.lr_gamma)

    opt_s, opt_dc, sched = optimisers()
    start = 0
    done = sorted(glob.glob(os.path.join(out, "checkpoints", "gen-*.pt")))
    inputs = {"il": dataclasses.asdict(cfg), "train": data_fingerprint(train), "val": data_fingerprint(val)}
    if done:
        state = _load_state(done[-1])
        if state["config"] != dataclasses.asdict(cfg):
            raise ValueError(f"{out} holds an IL run with another config; choose another --out")
        # a resumed run must continue on the same data, not mix two (raises naming what differs)
        if not check_stage_inputs(out, "il", inputs):
            log.warning("%s records no inputs (written by an older ltbench): resuming it on trust", out)
        model.load_state_dict(state["model"])
        opt_s.load_state_dict(state["opt_s"])
        opt_dc.load_state_dict(state["opt_dc"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        start = state["generation"] + 1
        log.info("resuming iterated learning at generation %d", start)
    if is_main():
        os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump({"il": dataclasses.asdict(cfg), "ops_backend": ops.backend_for(dev), "device": str(dev), "autocast": str(amp).replace("torch.", "") if amp else "float32"}, f, indent=2)
        write_stage_inputs(out, "il", inputs)  # before the first checkpoint it describes

    for g in range(start, cfg.generations):
        t0 = time.time()
        model.train()
        # loss sums stay on the device (float64, the same additions as Python floats): no
        # host synchronisation per value; the finiteness check is the one per step
        sums = torch.zeros(3, dtype=torch.float64, device=dev)
        n_seen = 0
        sizes = _global_sizes(len(train), cfg.batch_size, world)
        for _ in range(cfg.interaction_epochs):
            for step, (z, y, _) in enumerate(tqdm(_loader(train, cfg, True, gen, dev), desc=f"gen {g} interaction", disable=not progress, leave=False)):
                z, y = to_device(z, dev), to_device(y, dev)
                with autocast(dev, amp):
                    s, zr, logits = model(z)
                l_r = _recon(cfg, zr.float(), z)
                l_c = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pos_weight)
                loss = cfg.lam * l_r + (1 - cfg.lam) * l_c
                _check_finite(loss, "interaction", g, out)
                opt_s.zero_grad(set_to_none=True)
                opt_dc.zero_grad(set_to_none=True)
                loss.backward()
                _average_gradients(model, world, len(z), sizes[step])
                opt_s.step()
                opt_dc.step()
                sums += torch.stack([loss.detach(), l_r.detach(), l_c.detach()]).double() * len(z)
                n_seen += len(z)
            sched.step()
        average_buffers(model)  # before the teacher is copied: one teacher on every rank
        recalibrate_batchnorm(model, train, cfg, gen, dev, amp)
        tot = dict(zip(("loss", "recon", "cls", "n"), sum_over_ranks([*sums.tolist(), n_seen])))
        entry = {"generation": g, "interaction": {key: tot[key] / max(tot["n"], 1) for key in ("loss", "recon", "cls")}}
        # the model this generation's interaction made (what CAMs and fusion use after the last)
        entry["val"] = evaluate(model, val, cfg, dev, amp) if val is not None and len(val) else None
        model.train()
        if g < cfg.generations - 1:
            teacher = _frozen_copy(model.student)
            torch.manual_seed(cfg.seed * 100_003 + g)  # seeded per generation: a resumed run re-initialises identically
            _reinitialise_on_cpu(model.student, dev)  # a freshly initialised student ...
            opt_s = torch.optim.AdamW(model.student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)  # ... and a new optimiser
            im, m = torch.zeros((), dtype=torch.float64, device=dev), 0
            for _ in range(cfg.imitation_epochs):
                for step, (z, _, _) in enumerate(tqdm(_loader(train, cfg, True, gen, dev), desc=f"gen {g} imitation", disable=not progress, leave=False)):
                    z = to_device(z, dev)
                    with torch.no_grad():
                        with autocast(dev, amp):
                            t_logits = teacher(z)
                        # one process's uniforms for the whole global batch, drawn on the CPU;
                        # this rank's rows
                        u = torch.rand(sizes[step], *t_logits.shape[2:], generator=gen, device=gen.device)[rank::world]
                        with no_autocast(dev):
                            idx = ops.channel_sample(t_logits.float(), to_device(u, dev))
                    with autocast(dev, amp):
                        s_logits = model.student(z)
                    with no_autocast(dev):
                        loss = ops.imitation_bce(s_logits.float(), idx)
                    _check_finite(loss, "imitation", g, out)
                    opt_s.zero_grad(set_to_none=True)
                    loss.backward()
                    _average_gradients(model.student, world, len(z), sizes[step])
                    opt_s.step()
                    im += loss.detach().double() * len(z)
                    m += len(z)
            im, m = sum_over_ranks([float(im), m])
            entry["imitation"] = {"loss": im / max(m, 1)}
        average_buffers(model)
        entry["seconds"] = round(time.time() - t0, 2)
        if is_main():
            state = {"config": dataclasses.asdict(cfg), "generation": g, "model": model.state_dict(), "opt_s": opt_s.state_dict(), "opt_dc": opt_dc.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state()}
            with atomic_path(_checkpoint_path(out, g)) as tmp:
                torch.save(state, tmp)
            with open(os.path.join(out, "log.jsonl"), "a") as f:  # after the checkpoint: a resumed run never logs twice
                f.write(json.dumps(entry) + "\n")
        log.info("generation %d: %s", g, entry)
    model.eval()
    if is_main():
        save_il(model, cfg, os.path.join(out, "model.pt"))
    return model


def _frozen_copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module).eval().requires_grad_(False)


def save_il(model: ILModel, cfg: ILConfig, path: str) -> None:
    with atomic_path(path) as tmp:
        torch.save({"config": dataclasses.asdict(cfg), "latent_shape": model.latent_shape, "n_classes": model.n_classes, "model": model.state_dict()}, tmp)


def _load_state(path: str) -> dict:
    """A checkpoint as tensors and plain containers only (``weights_only``): a crafted file
    from a user path can never run code here. One-line ``ValueError`` naming the file for
    anything that is not an ltbench IL checkpoint."""
    from ltbench.utils.weights import load_checkpoint

    state = load_checkpoint(path, "IL checkpoint")
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{path} is not an ltbench IL checkpoint (expected a dict with 'config' and 'model', as `ltbench train-il` writes; got {type(state).__name__})")
    return state


def config_from_state(state: dict, path: str) -> ILConfig:
    """The ``ILConfig`` a checkpoint was written with; an unknown or invalid field is a
    ``ValueError`` naming the file (another ltbench version, or an edited file)."""
    names = {f.name for f in dataclasses.fields(ILConfig)}
    unknown = sorted(set(state["config"]) - names)
    if unknown:
        raise ValueError(f"{path}: its IL config has unknown field(s) {unknown} (written by another ltbench version?); retrain with `ltbench train-il`")
    try:
        return ILConfig(**state["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: its IL config is invalid: {exc}") from None


def load_il(path: str, device="auto") -> ILModel:
    """The model of a ``train_il`` run folder (or its ``model.pt``), in eval mode on ``device``
    (auto, cpu, cuda, cuda:N): the weights are mapped straight onto the device."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no trained IL model at {path}; run `ltbench train-il` first")
    dev = resolve_device(device)
    state = _load_state(path)
    cfg = config_from_state(state, path)
    shape, k = state.get("latent_shape"), state.get("n_classes")
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape) and isinstance(k, int) and k > 0):
        raise ValueError(f"{path}: latent_shape {shape!r} / n_classes {k!r} are not an IL model's")
    model = ILModel(tuple(shape), k, cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the model its config describes ({str(exc).splitlines()[0]})") from None
    model = _move(model, dev)
    return model.eval()
