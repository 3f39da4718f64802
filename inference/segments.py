"""Segments of a long recording, each predicted as the model was trained: on one utterance.

``--segments speech`` cuts a recording at its pauses. Voice activity detection (extract.vad: Silero
VAD, hysteresis between --vad-threshold and --vad-exit-threshold, pauses shorter than --min-pause
bridged, speech shorter than --min-speech dropped) gives the speech intervals; they become
utterances of the length the model was trained on: CREMA-D's clips last 1 to 5 s (the demo's 1.5
to 3.5 s), so an utterance lasts --min-segment (1.5 s) to --max-segment (6 s):

1. In order, a speech interval joins the utterance before it while that utterance is shorter than
   --min-segment, the pause between is at most JOINED_PAUSE (1 s) and the two together span at
   most --max-segment; a short last utterance joins the one before it on the same conditions.
2. An utterance still shorter than --min-segment is widened about its centre to --min-segment,
   into the pauses around it but not past its neighbours or the recording's ends (training clips
   have silence around their speech too).
3. An utterance longer than --max-segment is cut into the fewest equal parts no longer than it.

The recording's sound is never held whole (``RecordingAudio``): it is read in blocks of a few
seconds once to check it, once for the voice activity detection, and once more to hand each
segment its samples, so that memory does not grow with the recording's length.

``--segments fixed`` cuts it into windows of --segment-seconds every --hop-seconds from 0; the
last ends at the recording's end, so the windows cover it exactly. It needs no audio: a
recording without speech or without a sound track is predicted from its video.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import option
from common.errors import ProjectError
from extract.audio import SAMPLE_RATE, NoAudio, audio_blocks
from extract.vad import SpeechDetector, VadConfig, speech_intervals

SEGMENT_MODES = ("none", "speech", "fixed")
# Pauses within one of CREMA-D's sentences last well under a second: a longer one ends an utterance.
JOINED_PAUSE = 1.0


class SegmentError(ProjectError):
    """A recording cannot be segmented as asked; the message says what to do."""


@dataclass
class SegmentConfig:
    segments: str = option("none", "cut long recordings into segments and predict each: none (one prediction a "
                                   "file, in windows of --window-seconds averaged), speech (utterances found by "
                                   "voice activity detection) or fixed (--segment-seconds every --hop-seconds)")
    segment_seconds: float = option(4.0, "with --segments fixed: each window's length in seconds")
    hop_seconds: float = option(0.0, "with --segments fixed: seconds from one window's start to the next's, at most "
                                     "--segment-seconds (0: --segment-seconds, windows end to end)")
    min_segment: float = option(1.5, "with --segments speech: shorter utterances are joined or widened to this")
    max_segment: float = option(6.0, "with --segments speech: longer utterances are cut into equal parts")
    vad_threshold: float = option(0.5, "with --segments speech: speech starts at this speech probability")
    vad_exit_threshold: float = option(0.35, "with --segments speech: speech ends below this speech probability")
    min_pause: float = option(0.3, "with --segments speech: shorter pauses are bridged (seconds)")
    min_speech: float = option(0.25, "with --segments speech: shorter speech is dropped (seconds)")

    def __post_init__(self):
        if self.segments not in SEGMENT_MODES:
            raise SegmentError(f"--segments must be one of {', '.join(SEGMENT_MODES)}, got {self.segments!r}")
        if not 0 < self.segment_seconds < math.inf:
            raise SegmentError(f"--segment-seconds must be positive, got {self.segment_seconds}")
        if not 0 <= self.hop_seconds <= self.segment_seconds:
            raise SegmentError(f"--hop-seconds must be within 0..--segment-seconds ({self.segment_seconds:g}) so "
                               f"that the windows cover the recording, got {self.hop_seconds}")
        if not 0 < self.min_segment <= self.max_segment < math.inf:
            raise SegmentError(f"--min-segment ({self.min_segment}) must be positive and at most --max-segment "
                               f"({self.max_segment})")
        if not 0 <= self.vad_exit_threshold <= self.vad_threshold <= 1:
            raise SegmentError(f"--vad-exit-threshold ({self.vad_exit_threshold}) must be within 0..--vad-threshold "
                               f"({self.vad_threshold}), and that within 0..1")
        if not (self.min_pause >= 0 and self.min_speech >= 0):
            raise SegmentError(f"--min-pause ({self.min_pause}) and --min-speech ({self.min_speech}) must be "
                               "at least 0")

    @property
    def vad(self) -> VadConfig:
        return VadConfig(self.vad_threshold, self.vad_exit_threshold, self.min_pause, self.min_speech)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    speech_seconds: float  # of speech in it (--segments speech), or its length (fixed)


def fixed_segments(duration: float, seconds: float, hop: float) -> list[Segment]:
    """Windows of ``seconds`` every ``hop`` seconds from 0 (hop 0: ``seconds``), the last ending at
    ``duration``."""
    hop = hop or seconds
    count = 1 + max(0, math.ceil((duration - seconds) / hop - 1e-9))
    windows = [(k * hop, min(k * hop + seconds, duration)) for k in range(count)]
    return [Segment(start, end, end - start) for start, end in windows]


def utterance_segments(speech: list[tuple[float, float]], duration: float, shortest: float,
                       longest: float) -> list[Segment]:
    """Utterances of ``shortest`` to ``longest`` seconds from speech intervals (the module's rule)."""
    groups: list[list[float]] = []
    for start, end in speech:
        if groups and _joins(groups[-1], groups[-1], (start, end), shortest, longest):
            groups[-1][1] = end
        else:
            groups.append([start, end])
    if len(groups) > 1 and _joins(groups[-1], groups[-2], groups[-1], shortest, longest):
        groups[-2][1] = groups.pop()[1]
    widened = [_widened(groups, index, duration, shortest) for index in range(len(groups))]
    parts = [part for start, end in widened for part in _equal_parts(start, end, longest)]
    return [Segment(start, end, _overlap(speech, start, end)) for start, end in parts]


def _joins(short, first, second, shortest: float, longest: float) -> bool:
    """Whether ``first`` and ``second`` (in order) become one utterance for the sake of ``short`` (one of them)."""
    return (short[1] - short[0] < shortest and second[0] - first[1] <= JOINED_PAUSE
            and second[1] - first[0] <= longest)


def _widened(groups: list[list[float]], index: int, duration: float, shortest: float) -> tuple[float, float]:
    start, end = groups[index]
    missing = shortest - (end - start)
    if missing <= 0:
        return start, end
    floor = groups[index - 1][1] if index > 0 else 0.0
    ceiling = groups[index + 1][0] if index + 1 < len(groups) else duration
    start = max(floor, start - missing / 2)
    end = min(ceiling, start + shortest)
    return max(floor, end - shortest), end


def _equal_parts(start: float, end: float, longest: float) -> list[tuple[float, float]]:
    count = max(1, math.ceil((end - start) / longest - 1e-9))
    step = (end - start) / count
    return [(start + k * step, start + (k + 1) * step) for k in range(count)]


def _overlap(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in intervals)


@dataclass
class RecordingAudio:
    """A recording's sound track, 16 kHz mono as extraction reads it (extract.audio.audio_blocks), read
    in blocks whenever it is needed and never held whole."""

    path: Path
    samples: int = 0
    note: str = ""  # why it cannot be used ('' when it can): the same notes as extraction's

    @classmethod
    def scan(cls, path: Path, min_samples: int) -> RecordingAudio:
        """The track's length, and whether it is usable (decodable, finite, at least ``min_samples``)."""
        audio = cls(path)
        try:
            for block in audio.blocks():
                if not np.isfinite(block).all():
                    return cls(path, note="audio has non-finite samples")
                audio.samples += len(block)
        except NoAudio as error:
            return cls(path, note=str(error))
        if not audio.samples:
            audio.note = "the audio track is empty"
        elif audio.samples < min_samples:
            audio.note = f"audio shorter than one analysis window ({audio.samples} samples)"
        return audio

    @property
    def usable(self) -> bool:
        return not self.note

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def blocks(self) -> Iterator[np.ndarray]:
        return audio_blocks(self.path)

    def between(self, segments: Sequence[Segment]) -> Iterator[np.ndarray]:
        """Each segment's samples, from round(start * SAMPLE_RATE) to round(end * SAMPLE_RATE), in
        order; the segments' starts and ends never go back (as both kinds of segment are made)."""
        blocks, held, held_from = self.blocks(), np.zeros(0, np.float32), 0  # held_from: held[0]'s sample
        for segment in segments:
            start, end = round(segment.start * SAMPLE_RATE), round(segment.end * SAMPLE_RATE)
            while True:
                # What lies before the segment is let go as it is read: a long pause is never held.
                dropped = min(max(0, start - held_from), len(held))
                held, held_from = held[dropped:], held_from + dropped
                if held_from + len(held) >= end or (block := next(blocks, None)) is None:
                    break
                held = np.concatenate([held, block])
            yield held[start - held_from:end - held_from]


class Segmenter:
    """Cuts recordings as a SegmentConfig says; the VAD model is loaded on first use."""

    def __init__(self, config: SegmentConfig):
        self.config = config
        self._detector: SpeechDetector | None = None

    def __call__(self, duration: float, audio: RecordingAudio,
                 name: str) -> tuple[list[Segment], list[tuple[float, float]]]:
        """The segments of a recording of ``duration`` seconds and its speech intervals ([] for fixed windows)."""
        config = self.config
        if config.segments == "fixed":
            return fixed_segments(duration, config.segment_seconds, config.hop_seconds), []
        if not audio.usable:
            raise SegmentError(f"{name}: no audio to find speech in ({audio.note}); --segments fixed "
                               "predicts it in regular windows from its video")
        if self._detector is None:
            self._detector = SpeechDetector()
        speech = speech_intervals(self._detector.probabilities(audio.blocks()), config.vad)
        speech = [(start, min(end, duration)) for start, end in speech if start < duration]
        if not speech:
            raise SegmentError(f"{name}: no speech found (--vad-threshold {config.vad_threshold:g}); a lower "
                               "threshold, or --segments fixed, predicts it in regular windows")
        return utterance_segments(speech, duration, config.min_segment, config.max_segment), speech
