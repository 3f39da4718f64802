"""``logmel`` (the default, offline): extract.audio's log-mel, ``n_mels`` numbers every ``hop_ms``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from common.config import option
from extract.audio import SAMPLE_RATE, LogMel, MelConfig
from extract.audio_encoders.base import AUDIO_ENCODERS, AudioEncoder, AudioEncoderError

# Windows longer than this are not an utterance's spectrum any more, and their FFTs grow with them.
MAX_WIN_MS = 1000.0


@dataclass(frozen=True)
class LogMelOptions:
    n_mels: int = option(80, "mel bands")
    win_ms: float = option(25.0, "log-mel window, milliseconds")
    hop_ms: float = option(10.0, "log-mel hop, milliseconds")

    def __post_init__(self) -> None:
        if not (math.isfinite(self.win_ms) and 0 < self.win_ms <= MAX_WIN_MS):
            raise AudioEncoderError(f"--win-ms must be within 0..{MAX_WIN_MS:g}, got {self.win_ms}")
        if not (math.isfinite(self.hop_ms) and 0 < self.hop_ms <= self.win_ms):
            raise AudioEncoderError(f"--hop-ms must be positive and at most --win-ms ({self.win_ms:g}), got "
                                    f"{self.hop_ms}")
        # A window's FFT has win_length // 2 + 1 frequency bins; more mel bands than that are empty.
        bins = self.mel().win_length // 2 + 1
        if not 1 <= self.n_mels <= bins:
            raise AudioEncoderError(f"--n-mels must be within 1..{bins} (the frequency bins of a {self.win_ms:g} ms "
                                    f"window at {SAMPLE_RATE} Hz), got {self.n_mels}")

    def mel(self) -> MelConfig:
        return MelConfig(self.n_mels, self.win_ms, self.hop_ms)


@AUDIO_ENCODERS.register
class LogMelEncoder(AudioEncoder):
    name = "logmel"
    Options = LogMelOptions
    weights_note = "no weights (torchaudio)"

    def __init__(self, options: LogMelOptions, device: str = "cpu", expected_sha256: str = ""):
        config = options.mel()
        self.log_mel = LogMel(config, device)
        self.dim, self.rate = config.n_mels, 1000.0 / config.hop_ms
        self.min_samples = config.win_length
        self.identity = f"torchaudio {metadata.version('torchaudio')}"

    def __call__(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return self.log_mel(clips)

    @classmethod
    def folder_part(cls, options: LogMelOptions) -> str:
        return f"mel{options.n_mels}"
