"""What a checkpoint holds beyond the weights, and the checks that make a resumed run exact.

last.pt keeps every process's random state (torch, the modality drop-out generator, and the
CUDA generator of the process's own GPU), so that a run resumed with as many processes continues
exactly as if it had not stopped, and the batches' step budget it trained with, so that it is
resumed with the same batches.
"""
from __future__ import annotations

from dataclasses import asdict

import torch
import torch.distributed as dist

from model.auxformer import AuxFormerConfig
from training.config import CUDA_BATCH_STEPS, FREE_ON_RESUME, TrainConfig, TrainingError
from training.distributed import Distributed


def random_states(dropout_generator: torch.Generator, device: torch.device, distributed: Distributed) -> list[dict]:
    """Every process's random state, rank by rank (gathered to all processes)."""
    state = {"torch": torch.get_rng_state(), "modality_dropout": dropout_generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if distributed.world_size == 1:
        return [state]
    states = [None] * distributed.world_size
    dist.all_gather_object(states, state)
    return states


def restore_random_state(states: list[dict], dropout_generator: torch.Generator, device: torch.device,
                         distributed: Distributed) -> bool:
    """This process's saved random state; False (and nothing restored) if the run had another process count."""
    if len(states) != distributed.world_size:
        return False
    state = states[distributed.rank]
    torch.set_rng_state(state["torch"])
    dropout_generator.set_state(state["modality_dropout"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    return True


def check_resumable(checkpoint: dict, model_config: AuxFormerConfig, config: TrainConfig, path,
                    batch_step_budget: int | None) -> None:
    """TrainingError unless the checkpoint's run goes on as it was: the same model, options and batches."""
    expected = model_config.to_dict()
    differences = [f"model {name} {value} != {expected.get(name)}"
                   for name, value in checkpoint["model_config"].items() if expected.get(name) != value]
    current = asdict(config)
    differences += [f"{name} {value} != {current.get(name)}" for name, value in checkpoint["train_config"].items()
                    if name not in FREE_ON_RESUME and current.get(name) != value]
    if config.lr_schedule != "constant" and checkpoint["train_config"]["epochs"] != config.epochs:
        differences.append(f"epochs {checkpoint['train_config']['epochs']} != {config.epochs} under the "
                           f"{config.lr_schedule} schedule, which spans the run's epochs")
    # A checkpoint without one is from before batches had a budget: they had none.
    saved_budget = checkpoint.get("batch_step_budget")
    if saved_budget != batch_step_budget:
        differences.append(f"batch step budget {saved_budget or 'none'} != {batch_step_budget or 'none'} "
                           f"(--max-batch-steps 0 is {CUDA_BATCH_STEPS} on CUDA, none on CPU; give the run's "
                           "budget, or -1 for none)")
    if differences:
        raise TrainingError(f"{path} was trained with other settings ({'; '.join(differences)}); "
                            "resume with the same settings, or start over (FORCE=1)")
