"""Voice activity: where a recording's audio holds speech, from Silero VAD's speech probabilities.

``SpeechDetector`` runs the pinned TorchScript model (extract.model_files.SILERO_VAD) with torch
alone (silero's package is not needed: the file holds the model and its chunk loop) on 16 kHz
audio, in chunks of 512 samples (32 ms) whose state carries from chunk to chunk.
``speech_intervals`` turns the probabilities into speech intervals with hysteresis: speech starts
at a chunk of at least ``threshold`` and lasts while no chunk falls below ``exit_threshold``; it
ends after its last chunk of at least ``threshold``, since the probability decays for a few
chunks after the voice stops (on 12 demo clips the ends came 0.06 to 0.17 s after the voice's
last loud 10 ms, 0.09 to 0.20 s when ending at the exit chunk; the starts 0.03 to 0.06 s late);
pauses shorter than ``min_pause`` are bridged, and speech shorter than ``min_speech`` after that
is dropped (a click, a cough).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from extract.audio import SAMPLE_RATE
from extract.model_files import SILERO_VAD, model_path

CHUNK = 512  # the model takes exactly 512 samples a call at 16 kHz
CHUNK_SECONDS = CHUNK / SAMPLE_RATE


@dataclass(frozen=True)
class VadConfig:
    # Silero's own defaults: 0.5 to enter speech, 0.15 less to leave it.
    threshold: float = 0.5
    exit_threshold: float = 0.35
    min_pause: float = 0.3  # seconds; shorter pauses are the gaps inside an utterance
    min_speech: float = 0.25  # seconds; shorter bursts are not utterances


class SpeechDetector:
    """The Silero VAD model, loaded once; ``probabilities`` of one recording's audio at a time."""

    def __init__(self):
        path = str(model_path(SILERO_VAD))
        # torch 2.11 marks torch.jit.load deprecated; the pinned file is TorchScript, and its other
        # forms (ONNX) would need onnxruntime.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            self._model = torch.jit.load(path, map_location="cpu").eval()

    @torch.inference_mode()
    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """The speech probability of each 512-sample chunk of 16 kHz mono audio (the last chunk
        zero-padded), float32.

        One call of the model's own loop (``audio_forward``, which starts from a fresh state) on one
        thread: 0.25 s for 17 s of audio, where a Python loop over the chunks took 1.3 s, and two
        threads on a busy 2-core machine took 4 to 17 s (the chunks are too small to share)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            waveform = torch.from_numpy(np.ascontiguousarray(samples, np.float32))[None]
            return self._model.audio_forward(waveform, SAMPLE_RATE)[0].numpy().astype(np.float32)
        finally:
            torch.set_num_threads(threads)


def speech_intervals(probabilities: np.ndarray, config: VadConfig) -> list[tuple[float, float]]:
    """(start, end) seconds of the speech in a recording, from its chunks' probabilities."""
    intervals, start, last, speaking = [], 0, 0, False
    for index, probability in enumerate(probabilities):
        if probability >= config.threshold:
            start, speaking = (start, True) if speaking else (index, True)
            last = index
        elif speaking and probability < config.exit_threshold:
            intervals.append([start, last + 1])
            speaking = False
    if speaking:
        intervals.append([start, last + 1])
    bridged: list[list[int]] = []
    for interval in intervals:
        if bridged and (interval[0] - bridged[-1][1]) * CHUNK_SECONDS < config.min_pause:
            bridged[-1][1] = interval[1]
        else:
            bridged.append(interval)
    return [(start * CHUNK_SECONDS, end * CHUNK_SECONDS) for start, end in bridged
            if (end - start) * CHUNK_SECONDS >= config.min_speech]
