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

``init_distributed()`` joins the group torchrun describes (gloo on CPU, NCCL with CUDA); the
``ltbench`` commands that train or generate call it. Only rank 0 writes shared results."""

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


def init_distributed() -> bool:
    """Join the process group when started by torchrun with WORLD_SIZE > 1 (gloo on CPU,
    NCCL when CUDA is available; each rank then uses cuda:LOCAL_RANK). Returns whether a group
    is initialised. A no-op for a single process."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def finish_distributed() -> None:
    """Leave the process group cleanly (all ranks meet, then it is destroyed): a rank that
    exits with the group alive can abort in gloo's threads at interpreter shutdown."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def sample_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for one sample, a function of (seed, *keys) only (e.g. the class and the
    sample's index within it): samples do not depend on the batch or the number of processes."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]]).generate_state(1, np.uint64)[0]) >> 1


def sample_generator(seed: int, *keys: int):
    import torch

    return torch.Generator().manual_seed(sample_seed(seed, *keys))


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
    dist.all_gather_object(got, {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in part.items()})
    out = {}
    for k in part:
        pieces = [g[k] for g in got]
        first = pieces[0]
        shape = (n, *first.shape[1:])
        full = torch.empty(shape, dtype=first.dtype) if isinstance(first, torch.Tensor) else np.empty(shape, dtype=first.dtype)
        for r, piece in enumerate(pieces):
            full[r::world] = piece
        out[k] = full
    return out
