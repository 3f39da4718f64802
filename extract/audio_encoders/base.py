"""The audio encoder interface and its registry: 16 kHz mono clips in, one (frames x dim) array per clip out.

An encoder is a class registered with ``@AUDIO_ENCODERS.register``: its ``name`` is the value of
``--audio-encoder``, its ``Options`` dataclass the options it takes (command-line options of the
stages that extract, named so that no two encoders share one), ``folder_part`` its part of an
extraction folder's name and ``weights_files`` what ``make models`` lists for it. It is built as
``Encoder(options, device, expected_sha256)`` and encodes whole clips.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from common.registry import NoOptions, Registry
from extract.model_files import EncoderFile, ModelFileError


class AudioEncoderError(ModelFileError):
    """An audio encoder that cannot be built: unknown name, options out of range, missing or wrong weights."""


class AudioEncoder(ABC):
    """Encodes whole clips; subclasses set the attributes."""

    name: str
    Options: type = NoOptions
    machine_paths: tuple[str, ...] = ()  # options that name a file of this machine (compared by digest)
    dim: int  # numbers per frame
    rate: float  # frames a second
    min_samples: int  # shorter audio gives no frame
    weights_sha256: str = ""
    identity: str = ""  # what made the features beyond the options: package versions, model name
    weights_note = "no weights"  # what make models says of an encoder without weights files
    # True for an encoder that takes one clip at a time on the CPU, whatever the device, so that a clip's
    # features are the same wherever it runs: extraction runs it in its workers, beside the cores' other work.
    per_clip = False

    def in_workers(self, device: str) -> bool:
        """Whether extraction runs it in its worker processes, each worker its own, on its clips (a few a
        task): an encoder on the CPU is faster beside the cores' other work than after it in the main
        process. The others run batched in the main process, on ``device``."""
        return self.per_clip

    @abstractmethod
    def __init__(self, options, device: str = "cpu", expected_sha256: str = ""):
        """Load what the encoder needs; with ``expected_sha256``, only weights of that digest are opened."""

    @abstractmethod
    def __call__(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """(frames, dim) float32 of each 16 kHz mono float32 clip."""

    @classmethod
    def folder_part(cls, options) -> str:
        """The encoder's part of an extraction folder's name."""
        return cls.name

    @classmethod
    def weights_files(cls) -> list[EncoderFile]:
        return [EncoderFile(cls.name, "audio", "-", "", True, cls.weights_note)]


AUDIO_ENCODERS: Registry[AudioEncoder] = Registry("audio encoder", AudioEncoderError)


def make_audio_encoder(name: str = "logmel", options=None, device: str = "cpu",
                       expected_sha256: str = "") -> AudioEncoder:
    """The encoder called ``name`` with ``options`` (its defaults when None)."""
    encoder = AUDIO_ENCODERS[name]
    return encoder(options if options is not None else encoder.Options(), device, expected_sha256)
