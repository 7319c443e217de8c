"""Rank and world size for loops that may run under ``torchrun``, per-sample seeds, and the
gather that puts a sharded generation back together.

Two notions of "world":

* ``rank_world()`` splits independent work (Table 1's cells, the latent store's shards): it
  reads torch.distributed when a process group is initialised, else the environment torchrun
  sets (RANK, WORLD_SIZE), else a single process.
* ``group_rank_world()`` is the world of collectives (DDP, DistributedSampler, all_gather): the
  initialised process group, else (0, 1). A process that torchrun started but that never
  joined a group (``python -m ltbench.reproduce table1`` claims cells by file locks instead)
  trains and generates on its own, whole.

``init_distributed()`` joins the group torchrun describes; the ``ltbench`` commands that train
or generate call it. With CUDA the group is ``"cpu:gloo,cuda:nccl"``: one group that carries
CUDA tensors over NCCL and CPU tensors (loss sums, the pickled objects of ``gather_shares``)
over gloo; without CUDA it is ``"gloo"`` (``process_group_backend``). The collectives below
also work in a group someone else made with NCCL alone: a CPU tensor is staged through this
rank's GPU. Only rank 0 writes shared results."""

import os

import numpy as np


def group_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return group_rank_world()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    """Rank 0 of the process group (a process outside any group is its own rank 0)."""
    return group_rank_world()[0] == 0


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def process_group_backend(cuda_available: bool) -> str:
    """The backend string ``init_distributed`` passes to ``init_process_group``:
    ``"cpu:gloo,cuda:nccl"`` when CUDA is available (NCCL cannot carry CPU tensors, and the
    method's collectives carry both: gradients on the GPU, loss sums and pickled samples on
    the CPU), ``"gloo"`` otherwise. ``LTBENCH_DIST_BACKEND`` overrides it (any string
    ``init_process_group`` takes, e.g. ``gloo`` to rule NCCL out when debugging)."""
    override = os.environ.get("LTBENCH_DIST_BACKEND", "").strip()
    if override:
        return override
    return "cpu:gloo,cuda:nccl" if cuda_available else "gloo"


def init_distributed() -> bool:
    """Join the process group when started by torchrun with WORLD_SIZE > 1 (the backend of
    ``process_group_backend``; with CUDA each rank first makes cuda:LOCAL_RANK its current
    device, which ``resolve_device("cuda")`` then returns). Returns whether a group is
    initialised. A no-op for a single process."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(process_group_backend(cuda))
    return True


def _collective_device(t):
    """Where ``t`` can go through the default group: its own device, except a CPU tensor in a
    group of NCCL alone (one made outside ``init_distributed``), which goes via this rank's GPU."""
    import torch
    import torch.distributed as dist

    if t.device.type == "cpu" and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device


def all_reduce_sum_(tensors) -> None:
    """Sum every tensor of ``tensors`` over the ranks, in place: one all-reduce per (device,
    dtype) of the tensors flattened together (a U-Net's hundred gradients are one NCCL call,
    not a hundred). A no-op in one process."""
    if group_rank_world()[1] == 1:
        return
    import torch
    import torch.distributed as dist

    buckets: dict = {}
    for t in tensors:
        buckets.setdefault((t.device, t.dtype), []).append(t)
    for (device, _), group in buckets.items():
        flat = torch.cat([t.reshape(-1) for t in group])
        via = _collective_device(flat)
        moved = flat.to(via)
        dist.all_reduce(moved)
        if moved is not flat:
            flat.copy_(moved)
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def finish_distributed() -> None:
    """Leave the process group cleanly (all ranks meet, then it is destroyed): a rank that
    exits with the group alive can abort in gloo's threads at interpreter shutdown."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


# ---- data-parallel training -------------------------------------------------------------
# Every trainer draws the GLOBAL batch exactly as one process would (same generator, same
# indices, same per-image randomness) and each rank keeps the rows ``local_rows`` gives it.
# The model is wrapped in torch's DistributedDataParallel, which averages gradients over the
# ranks; ``ddp_loss_scale`` reweights each rank's mean loss so that average is the gradient of
# the global batch's mean loss even when the ranks hold different numbers of rows. BatchNorm
# stays local to each rank during a step (SyncBatchNorm runs only on CUDA) and its running
# statistics are averaged over the ranks after training (``average_buffers``): a documented
# difference from one process, bounded by the tests. GroupNorm models (the prior's VAE and
# UNet) follow one process up to float summation order.
def local_rows(batch):
    """This rank's rows ``batch[rank::world]`` of a global batch (all of it in one process)."""
    rank, world = group_rank_world()
    return batch if world == 1 else batch[rank::world]


def ddp_loss_scale(n_local: int, n_global: int) -> float:
    """Factor on a rank's mean loss over its ``n_local`` rows so that DDP's gradient average
    over the ranks equals the gradient of the mean loss over all ``n_global`` rows."""
    world = group_rank_world()[1]
    return world * n_local / n_global if world > 1 else 1.0


def wrap_ddp(module, **kwargs):
    """``module`` in DistributedDataParallel when a process group with more than one rank is
    initialised (buffers are not broadcast: see ``average_buffers``), else ``module`` itself."""
    if group_rank_world()[1] == 1:
        return module
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    with warnings.catch_warnings():  # torch 2.14 deprecates the name, not the behaviour we need (rank-local buffers)
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        return DistributedDataParallel(module, broadcast_buffers=False, **kwargs)


def average_buffers(module) -> None:
    """Floating-point buffers (BatchNorm's running statistics) replaced by their mean over the
    ranks, so every rank holds one model. The buffers stay on their device (GPU buffers go
    through NCCL)."""
    world = group_rank_world()[1]
    if world > 1:
        bufs = [b for b in module.buffers() if b.is_floating_point()]
        all_reduce_sum_(bufs)
        for b in bufs:
            b /= world


def sum_over_ranks(values: list) -> list:
    """Element-wise sum over the ranks of a list of numbers (itself in one process). The sum is
    a float64 CPU tensor (gloo's side of the group)."""
    if group_rank_world()[1] == 1:
        return values
    import torch

    t = torch.tensor(values, dtype=torch.float64, device="cpu")
    all_reduce_sum_([t])
    return t.tolist()


def sample_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for one sample, a function of (seed, *keys) only (e.g. the class and the
    sample's index within it): samples do not depend on the batch or the number of processes."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]]).generate_state(1, np.uint64)[0]) >> 1


def sample_generator(seed: int, *keys: int):
    """A CPU ``torch.Generator`` seeded with ``sample_seed(seed, *keys)``. On the CPU on purpose:
    a sample's random numbers (masks, p, noise) are then the same whatever device computes with
    them (draw with ``device=g.device``, then copy)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(sample_seed(seed, *keys))


def my_share(n: int) -> np.ndarray:
    """The indices of ``n`` samples this rank of the process group makes: rank, rank + world, ..."""
    rank, world = group_rank_world()
    return np.arange(rank, n, world)


def gather_shares(part: dict, n: int) -> dict:
    """Put a sharded generation back together on every rank. ``part`` maps names to arrays or
    tensors whose first axis follows ``my_share(n)``; returns the same names with all ``n``
    rows in index order. A single process gets ``part`` back unchanged."""
    import torch
    import torch.distributed as dist

    rank, world = group_rank_world()
    if world == 1:
        return part
    got = [None] * world
    # objects are pickled on the CPU: gloo carries them in a "cpu:gloo,cuda:nccl" group (torch
    # picks the CPU backend for object collectives when the group has one)
    dist.all_gather_object(got, {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in part.items()})
    out = {}
    for k in part:
        pieces = [g[k] for g in got]
        first = pieces[0]
        shape = (n, *first.shape[1:])
        full = torch.empty(shape, dtype=first.dtype, device="cpu") if isinstance(first, torch.Tensor) else np.empty(shape, dtype=first.dtype)
        for r, piece in enumerate(pieces):
            full[r::world] = piece
        out[k] = full
    return out
