"""The training options (``TrainConfig``) and the training error type."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common.config import check_within, option
from common.device import DEVICE_CHOICES
from common.errors import ProjectError
from model.variants import VARIANTS

SELECT_BY = {"loss": "dev_loss", "macro_f1": "dev_macro_f1"}
LR_SCHEDULES = ("constant", "cosine")
DROPOUT_UNITS = ("clip", "batch")
# Options that may differ between a run and its resumption: the first three do not change what is
# computed; max_batch_steps is checked by the budget it resolves to on this device instead
# (training.checkpoint.check_resumable), as its auto value depends on the device.
FREE_ON_RESUME = ("epochs", "device", "num_workers", "max_batch_steps")
# The padded steps (clips x longest clip's audio + video steps) of a training batch on CUDA under
# --max-batch-steps 0. A clip of s seconds has about 130 s steps (100 log-mel frames and 30 video
# frames a second), so CREMA-D's batches of 32 clips of at most about 5 s stay whole. Estimated
# on CPU, not measured on a GPU: the default AuxFormer's forward and backward in float32 took about
# B x (28 s + 3 s^2) MB for B clips of s seconds (4.3 GB for 8 clips of 10 s). At this budget that
# is about 15 GB for clips of 10 s (25 to a batch) and 30 GB for clips of 30 s (8 to a batch);
# bfloat16 autocast and the GPU's fused attention take less. Attention grows with the square of
# the length, so a budget of steps bounds memory only for clips of a given length: lower it for
# longer clips or a smaller GPU.
CUDA_BATCH_STEPS = 32_768


MAX_BATCH_SIZE = 4096  # clips padded and held at once
# What one value may ask for (NaN and infinity are refused too): a batch's clips are padded and
# held at once, every epoch costs a pass over the data, every worker is a process.
VALUE_RANGES = {"epochs": (1, 10_000), "batch_size": (1, MAX_BATCH_SIZE), "weight_decay": (0, 10),
                "grad_clip": (0, 1e5), "audio_dropout": (0, 1), "video_dropout": (0, 1), "num_workers": (0, 64),
                "max_batch_steps": (-1, 1e8)}


class TrainingError(ProjectError):
    """A config or run folder that training cannot go on with; the message says what to do."""


@dataclass
class TrainConfig:
    model: str = option("auxformer", f"what to train: {', '.join(VARIANTS)} (see model.variants)")
    epochs: int = option(30, "training epochs")
    batch_size: int = option(32, "clips per batch")
    lr: float = option(7.25e-4, "Adam learning rate (the reference's)")
    weight_decay: float = option(0.0, "decoupled weight decay (AdamW) of the 2-D weights; 0, the reference's, "
                                      "is plain Adam")
    lr_schedule: str = option("constant", "constant (the reference's) or cosine: decay to 0 over the epochs, per step")
    grad_clip: float = option(0.0, "clip the gradients' global norm to this (0: no clipping, the reference's)")
    seed: int = option(0, "seed of the initial weights, batch order, drop-outs")
    audio_dropout: float = option(0.2, "chance that a training clip's audio is given as missing")
    video_dropout: float = option(0.2, "chance that a training clip's video is given as missing (never both)")
    dropout_unit: str = option("clip", "draw the modality drop-out per clip, or per batch (the reference's: the whole "
                                       "batch loses its audio or its video)")
    missing_head_loss: bool = option(False, "train an auxiliary head also on clips whose modality is missing or "
                                            "dropped, as the reference does (needs --missing-stand-in learned)")
    select_by: str = option("loss", "keep the epoch with the lowest dev loss (loss) or highest dev macro-F1 (macro_f1)")
    device: str = option("auto", "auto (cuda when available), cpu or cuda")
    mixed_precision: bool = option(True, "bfloat16 autocast for training steps on CUDA (never on CPU; scoring "
                                         "is always float32)")
    num_workers: int = option(2, "data loading processes (0: load in the training process)")
    max_batch_steps: int = option(0, "most padded steps in a training batch (its clips x its longest clip's audio + "
                                     "video steps), a fuller batch is cut; 0: auto, "
                                     f"{CUDA_BATCH_STEPS} on CUDA and no limit on CPU; -1: no limit")

    def __post_init__(self) -> None:
        if self.model not in VARIANTS:
            raise TrainingError(f"unknown model {self.model!r}; choose one of {', '.join(VARIANTS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.dropout_unit not in DROPOUT_UNITS:
            raise TrainingError(f"--dropout-unit must be one of {', '.join(DROPOUT_UNITS)}, got {self.dropout_unit!r}")
        if self.select_by not in SELECT_BY:
            raise TrainingError(f"--select-by must be one of {', '.join(SELECT_BY)}, got {self.select_by!r}")
        if self.device not in DEVICE_CHOICES:
            raise TrainingError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {self.device!r}")
        for name, (low, high) in VALUE_RANGES.items():
            check_within(name, getattr(self, name), low, high, TrainingError)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TrainingError(f"--lr must be a finite positive number, got {self.lr}")
        if self.audio_dropout + self.video_dropout > 1:
            raise TrainingError("--audio-dropout and --video-dropout must sum to at most 1, got "
                                f"{self.audio_dropout} and {self.video_dropout}")

    def batch_step_budget(self, device: torch.device) -> int | None:
        """The padded steps a training batch may hold on ``device`` (--max-batch-steps resolved); None: no limit."""
        if self.max_batch_steps == 0:
            return CUDA_BATCH_STEPS if device.type == "cuda" else None
        return self.max_batch_steps if self.max_batch_steps > 0 else None
