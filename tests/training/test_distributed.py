"""Which device a torchrun process takes: the GPU of its local rank, or the CPU; a clear error
when CUDA is asked for and absent. CUDA itself is not faked: the GPU case runs only with GPUs."""
from __future__ import annotations

import pytest
import torch

from common.device import resolve_device
from common.errors import ProjectError
from training.distributed import Distributed, init_distributed

TORCHRUN_PROCESS = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": "29555"}


def test_a_single_process_joins_no_group():
    assert init_distributed("cpu", environ={}) == Distributed()
    assert not torch.distributed.is_initialized()


def test_a_process_on_the_cpu_takes_the_cpu_whatever_its_local_rank():
    assert resolve_device("cpu", int(TORCHRUN_PROCESS["LOCAL_RANK"])) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")
def test_cuda_asked_for_without_cuda_is_refused_before_joining_the_group():
    with pytest.raises(ProjectError, match=r"--device cuda, but no CUDA device is available; use --device cpu"):
        init_distributed("cuda", environ=TORCHRUN_PROCESS)
    assert not torch.distributed.is_initialized()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_process_takes_the_gpu_of_its_local_rank():
    assert resolve_device("cuda", int(TORCHRUN_PROCESS["LOCAL_RANK"])) == torch.device("cuda", 1)
