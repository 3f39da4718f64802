"""Random states in last.pt: restored for this process, whatever the machine saved on; left alone
when the run had another process count."""
from __future__ import annotations

import torch

from training.checkpoint import random_states, restore_random_state
from training.distributed import Distributed

CPU = torch.device("cpu")


def saved_state(seed: int) -> dict:
    """A process's state as a CUDA machine saves it: with its GPU's generator state."""
    torch.manual_seed(seed)
    state = random_states(torch.Generator().manual_seed(seed + 1), CPU, Distributed())[0]
    return {**state, "cuda": torch.zeros(16, dtype=torch.uint8)}


def draws(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(4), torch.rand(4, generator=generator)


def test_a_state_saved_on_gpus_restores_this_process_torch_and_dropout_state_on_a_cpu():
    states = [saved_state(10), saved_state(20)]
    torch.manual_seed(20)
    expected = draws(torch.Generator().manual_seed(21))
    generator = torch.Generator().manual_seed(99)
    torch.manual_seed(99)
    assert restore_random_state(states, generator, CPU, Distributed(rank=1, world_size=2, local_rank=1))
    for restored, wanted in zip(draws(generator), expected):
        assert torch.equal(restored, wanted)


def test_a_run_resumed_with_another_process_count_restores_nothing():
    states = [saved_state(10), saved_state(20)]
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    expected = draws(torch.Generator().manual_seed(5))
    torch.manual_seed(5)
    assert not restore_random_state(states, generator, CPU, Distributed())
    for drawn, wanted in zip(draws(generator), expected):
        assert torch.equal(drawn, wanted)
