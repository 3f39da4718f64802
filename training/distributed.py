"""This process's place in a torchrun job, and joining its process group.

Started under torchrun (``WORLD_SIZE`` > 1 in the environment), a process joins the group (NCCL
on GPUs, one GPU per process, chosen by LOCAL_RANK; gloo on CPU). Every process starts from the
same weights, takes its share of each epoch's batches and its own drop-out draws; gradients are
averaged by DistributedDataParallel, and only rank 0 writes files or prints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from common.device import resolve_device
from training.config import TrainingError


@dataclass(frozen=True)
class Distributed:
    """The defaults describe a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device_name: str, environ=os.environ) -> Distributed:
    """Join torchrun's process group when there is one."""
    world_size = int(environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    local_rank = int(environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        device = resolve_device(device_name, local_rank)
        if device.type == "cuda":
            visible = torch.cuda.device_count()
            if local_rank >= visible:
                raise TrainingError(f"LOCAL_RANK {local_rank}, but this node shows {visible} GPUs "
                                    f"(CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
                                    f"start at most {visible} processes per node (torchrun --nproc_per_node)")
            # Without this every process's collectives would run on cuda:0.
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def close_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
