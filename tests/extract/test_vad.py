"""Speech intervals from per-chunk speech probabilities (extract.vad.speech_intervals): hysteresis
between the two thresholds, an end after the last confident chunk, short pauses bridged and short
bursts dropped; the model's probabilities of a recording given in blocks equal those of the whole."""
from __future__ import annotations

import numpy as np
import pytest

from extract.audio import SAMPLE_RATE
from extract.model_files import SILERO_VAD, ModelFileError, model_path
from extract.vad import CHUNK, CHUNK_SECONDS, SpeechDetector, VadConfig, speech_intervals


def chunks(*runs: tuple[float, int]) -> np.ndarray:
    """Probabilities as runs of (value, chunks)."""
    return np.concatenate([np.full(count, value, np.float32) for value, count in runs])


def test_hysteresis_keeps_speech_through_a_dip_and_ends_after_the_last_confident_chunk():
    # Speech from chunk 10; a dip to 0.4 (above the exit threshold) does not end it; the decay
    # through 0.4 after chunk 40 does, and the speech ends where the last chunk of 0.5 or more ends.
    probabilities = chunks((0.0, 10), (0.9, 10), (0.4, 5), (0.9, 15), (0.4, 3), (0.1, 20))
    [(start, end)] = speech_intervals(probabilities, VadConfig(min_pause=0.0, min_speech=0.0))
    assert start == pytest.approx(10 * CHUNK_SECONDS) and end == pytest.approx(40 * CHUNK_SECONDS)


def test_short_pauses_are_bridged_and_short_bursts_dropped():
    pause = round(0.2 / CHUNK_SECONDS)  # under --min-pause 0.3 s
    probabilities = chunks((0.0, 5), (0.9, 20), (0.0, pause), (0.9, 20), (0.0, 40), (0.9, 3), (0.0, 10))
    intervals = speech_intervals(probabilities, VadConfig())
    assert intervals == [pytest.approx((5 * CHUNK_SECONDS, (45 + pause) * CHUNK_SECONDS))]  # the 96 ms burst is gone


def test_probabilities_of_a_recording_in_blocks_are_those_of_the_whole(demo_corpus):
    try:
        model_path(SILERO_VAD, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"Silero VAD model not available: {error}")
    import soundfile
    import torch

    clips = sorted((demo_corpus / "AudioWAV").glob("*.wav"))[:3]
    silence = np.zeros(SAMPLE_RATE // 2, np.float32)
    samples = np.concatenate([part for clip in clips for part in (silence, soundfile.read(clip, dtype="float32")[0])])
    detector = SpeechDetector()
    with torch.inference_mode():
        whole = detector._model.audio_forward(torch.from_numpy(samples)[None], SAMPLE_RATE)[0].numpy()
    # Blocks that are not whole chunks, and a last chunk that is zero-padded, as the whole's is.
    edges = [0, 1000, 1000 + 7 * CHUNK, len(samples) // 2 + 3, len(samples)]
    blocks = detector.probabilities(samples[a:b] for a, b in zip(edges, edges[1:]))
    assert len(blocks) == len(whole) == -(-len(samples) // CHUNK)
    assert np.array_equal(blocks, whole)
    assert np.array_equal(detector.probabilities([samples]), whole)  # a second recording starts afresh
