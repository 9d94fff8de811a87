"""Multi-GPU training through ``torchrun`` (DistributedDataParallel), kept minimal.

``torchrun --nproc_per_node=N -m bida_app.cli.main train ...`` sets ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK``; each process then trains on its own GPU with its own data stream, DDP
averages the gradients, and rank 0 alone writes the cache, logs, samples and checkpoints.
The test suite runs two Gloo processes on the CPU; NCCL on several GPUs is the same code
path but has not run where bida was developed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from ..device import resolve_device

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Rank of this process among ``world`` processes (1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True under ``torchrun`` with more than one process."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files."""
        return self.rank == 0


def init_distributed(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group when ``WORLD_SIZE > 1``; return the rank info and the device.

    Single process: the device is ``device`` (``"auto"``: CUDA when available, else CPU).
    Distributed: NCCL on ``cuda:LOCAL_RANK`` when CUDA is available, Gloo on the CPU.
    """
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), dev
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local)
    torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    LOGGER.info("distributed training: rank %d of %d on %s", rank, world, dev)
    return DistInfo(rank, world, local), dev


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op when not distributed)."""
    if info.enabled:
        torch.distributed.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
