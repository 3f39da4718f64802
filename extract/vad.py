"""Voice activity: where a recording's audio holds speech, from Silero VAD's speech probabilities.

``SpeechDetector`` runs the pinned TorchScript model (extract.model_files.SILERO_VAD) with torch
alone (silero's package is not needed: the file holds the model and its chunk loop) on 16 kHz
audio, in chunks of 512 samples (32 ms) whose state carries from chunk to chunk, and from one
block of a recording's audio to the next (extract.audio.audio_blocks), so that a recording of any
length is detected in the memory of a block, with the probabilities of the whole.
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
from collections.abc import Iterable
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


class _ChunkLoop(torch.nn.Module):
    """The model's own chunk loop (its ``audio_forward``) without the reset of its state at the start,
    compiled with it: a block's chunks carry on from the previous block's."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        chunks = [self.model(samples[:, start:start + 512], 16000) for start in range(0, samples.shape[1], 512)]
        return torch.cat(chunks, 1)


class SpeechDetector:
    """The Silero VAD model, loaded once; ``probabilities`` of one recording's audio at a time."""

    def __init__(self):
        path = str(model_path(SILERO_VAD))
        # torch 2.11 marks torch.jit.load and script deprecated; the pinned file is TorchScript, and its other
        # forms (ONNX) would need onnxruntime.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            self._model = torch.jit.load(path, map_location="cpu").eval()
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
            self._loop = torch.jit.script(_ChunkLoop(self._model))

    @torch.inference_mode()
    def probabilities(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        """The speech probability of each 512-sample chunk of 16 kHz mono audio given in consecutive
        blocks (the last chunk zero-padded), float32: those of the model's ``audio_forward`` on the
        whole, which starts from a fresh state as this does.

        The compiled chunk loop on one thread: 0.25 s for 17 s of audio, where a Python loop over
        the chunks took 1.3 s, and two threads on a busy 2-core machine took 4 to 17 s (the chunks
        are too small to share)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._model.reset_states()
        found, left = [], np.zeros(0, np.float32)
        try:
            for block in blocks:
                samples = np.concatenate([left, block])
                whole = len(samples) - len(samples) % CHUNK
                found.append(self._chunks(samples[:whole]))
                left = samples[whole:]
            if len(left):
                found.append(self._chunks(np.pad(left, (0, CHUNK - len(left)))))
        finally:
            torch.set_num_threads(threads)
        return np.concatenate(found) if found else np.zeros(0, np.float32)

    def _chunks(self, samples: np.ndarray) -> np.ndarray:
        if not len(samples):
            return np.zeros(0, np.float32)
        waveform = torch.from_numpy(np.ascontiguousarray(samples, np.float32))[None]
        return self._loop(waveform)[0].numpy().astype(np.float32)


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
