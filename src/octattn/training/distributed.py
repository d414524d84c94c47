"""DDP through torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): no launcher of our own.

``torchrun --nproc_per_node=8 -m octattn train ...`` runs one process per GPU; with
``--nnodes`` and a rendezvous address, across machines. Without those variables the same
code runs as one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


MAX_AUTO_WORKERS = 8


def loader_workers(requested: int, info: DistInfo) -> int:
    """Loader processes for one training process: ``requested``, or with -1 the usable cores
    of this machine shared among the processes on it (torchrun's LOCAL_WORLD_SIZE), at most
    :data:`MAX_AUTO_WORKERS`. More than the machine has only makes PyTorch warn and the
    workers compete with training for the same cores."""
    if requested >= 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if info.distributed else 1
    return max(0, min(MAX_AUTO_WORKERS, cores // max(local_processes, 1)))


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


def shutdown(info: DistInfo) -> None:
    """Leave the process group."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process."""
    if info.distributed:
        dist.barrier()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (a list of one when alone)."""
    if not info.distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class EpochShardSampler(Sampler[int]):
    """Training order as a function of (seed, epoch) only, sharded over ranks.

    Each epoch draws a permutation (or, with ``weights``, a class-weighted draw with
    replacement) from a generator seeded with ``seed`` and the epoch, pads it to a
    multiple of the world size (so every rank runs the same number of steps), and gives
    rank ``r`` the items ``r, r + W, r + 2W, ...``. One process and W processes with
    batch ``B / W`` each therefore see the same global batches, and a resumed run replays
    an epoch exactly.
    """

    def __init__(self, num_samples: int, info: DistInfo, seed: int = 0, weights: torch.Tensor | None = None) -> None:
        self.num_samples = num_samples
        self.info = info
        self.seed = seed
        self.weights = weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order to produce."""
        self.epoch = epoch

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        else:
            order = torch.randperm(self.num_samples, generator=generator)
        indices = order.tolist()
        padding = (-len(indices)) % self.info.world_size
        return indices + indices[:padding]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.info.rank :: self.info.world_size])

    def __len__(self) -> int:
        return -(-self.num_samples // self.info.world_size)
