"""Rank and world size for loops that may run under ``torchrun``.

Read from torch.distributed when it is initialised, else from the environment torchrun sets
(RANK, WORLD_SIZE), else a single process. Only rank 0 writes shared results."""

import os


def rank_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover - torch always has it
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return rank_world()[0] == 0


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
