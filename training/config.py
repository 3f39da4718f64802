"""The training options (``TrainConfig``) and the training error type."""
from __future__ import annotations

from dataclasses import dataclass

from common.config import option
from common.device import DEVICE_CHOICES
from common.errors import ProjectError
from model.variants import VARIANTS

SELECT_BY = {"loss": "dev_loss", "macro_f1": "dev_macro_f1"}
LR_SCHEDULES = ("constant", "cosine")
# Options that may differ between a run and its resumption: they do not change what is computed.
FREE_ON_RESUME = ("epochs", "device", "num_workers")


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
    select_by: str = option("loss", "keep the epoch with the lowest dev loss (loss) or highest dev macro-F1 (macro_f1)")
    device: str = option("auto", "auto (cuda when available), cpu or cuda")
    mixed_precision: bool = option(True, "bfloat16 autocast for training steps on CUDA (never on CPU; scoring "
                                         "is always float32)")
    num_workers: int = option(2, "data loading processes (0: load in the training process)")

    def __post_init__(self) -> None:
        if self.model not in VARIANTS:
            raise TrainingError(f"unknown model {self.model!r}; choose one of {', '.join(VARIANTS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.select_by not in SELECT_BY:
            raise TrainingError(f"--select-by must be one of {', '.join(SELECT_BY)}, got {self.select_by!r}")
        if self.device not in DEVICE_CHOICES:
            raise TrainingError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {self.device!r}")
        rates = (self.audio_dropout, self.video_dropout)
        if min(rates) < 0 or sum(rates) > 1:
            raise TrainingError(f"modality drop-out rates must be at least 0 and sum to at most 1, got {rates}")
        if (self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.num_workers < 0 or self.weight_decay < 0
                or self.grad_clip < 0):
            raise TrainingError("--epochs and --batch-size must be at least 1, --lr positive, --num-workers, "
                                "--weight-decay and --grad-clip at least 0")
