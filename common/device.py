"""Which torch device a stage runs on."""
from __future__ import annotations

import torch

from common.errors import ProjectError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA when available, else CPU; under torchrun, the GPU of this process's local rank."""
    if name not in DEVICE_CHOICES:
        raise ProjectError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ProjectError("--device cuda, but no CUDA device is available; use --device cpu (or auto)")
        return torch.device("cuda", local_rank)
    return torch.device(name)
