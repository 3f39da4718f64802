"""The model options a user sets (``ModelOptions``), and the one place an AuxFormerConfig is made
from them and from the features it will read.

The pools: each modality's steps are averaged over windows before the model reads them, since
attention memory grows with the square of the steps. ``--audio-pool`` and ``--video-pool`` take
either a window in frames (``4``) or the steps a second the model should see (``25/s``): the
window is then the one that brings the features' own frame rate (from the extraction's index)
nearest to it, so the same setting suits every encoder (the log-mel's and eGeMAPS's 100 frames a
second are averaged 4 at a time to 25, wav2vec2's 50 two at a time; a 30 fps video kept as it is).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from common.config import option
from model.auxformer import MISSING_STAND_INS, AuxFormerConfig, ModelConfigError

PER_SECOND = "/s"


@dataclass
class ModelOptions:
    width: int = option(AuxFormerConfig.width, "model width (AuxFormerConfig)")
    num_heads: int = option(AuxFormerConfig.num_heads, "attention heads (AuxFormerConfig)")
    num_layers: int = option(AuxFormerConfig.num_layers, "layers per transformer (AuxFormerConfig)")
    audio_pool: str = option("25/s", "average the audio features over windows: N frames, or R/s for the window "
                                     "that brings them nearest to R steps a second")
    video_pool: str = option("30/s", "average the face embeddings over windows: N frames, or R/s for the window "
                                     "that brings them nearest to R steps a second")
    embed_dropout: float = option(AuxFormerConfig.embed_dropout, "dropout on every transformer's embedded input "
                                                                  "(AuxFormerConfig; the reference's 0.25)")
    missing_stand_in: str = option("learned", f"what a missing or dropped modality is attended as: "
                                              f"{' or '.join(MISSING_STAND_INS)} (AuxFormerConfig; zero is the "
                                              "reference's)")

    def __post_init__(self) -> None:
        for name in ("audio_pool", "video_pool"):
            parse_pool(getattr(self, name), name)
        # The sizes are checked where the config is made, with the features' sizes: all of them at once.
        self.model_config(1, 1, 1, 1.0, 1.0)

    def model_config(self, audio_dim: int, video_dim: int, n_classes: int, audio_rate: float,
                     video_rate: float) -> AuxFormerConfig:
        """The model for features of these sizes and frame rates (the rates choose the pools given as R/s)."""
        return AuxFormerConfig(audio_dim=audio_dim, video_dim=video_dim, n_classes=n_classes, width=self.width,
                               num_heads=self.num_heads, num_layers=self.num_layers,
                               audio_pool=pool_window(self.audio_pool, audio_rate),
                               video_pool=pool_window(self.video_pool, video_rate),
                               embed_dropout=self.embed_dropout, missing_stand_in=self.missing_stand_in)


def parse_pool(text: str, name: str = "pool") -> tuple[float, bool]:
    """(value, per_second) of a pool option: (4, False) for '4', (25.0, True) for '25/s'."""
    per_second = str(text).endswith(PER_SECOND)
    number = str(text)[:-len(PER_SECOND)] if per_second else str(text)
    try:
        value = float(number) if per_second else int(number)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0 and (per_second or value >= 1)):
        raise ModelConfigError(f"--{name.replace('_', '-')} {text!r}: a window of at least 1 frame (e.g. 4) or "
                               "a positive rate of steps a second (e.g. 25/s)")
    return value, per_second


def pool_window(text: str, frame_rate: float) -> int:
    """The window, in frames, that the pool option ``text`` asks of features at ``frame_rate`` a second."""
    value, per_second = parse_pool(text)
    return max(1, round(frame_rate / value)) if per_second else int(value)
