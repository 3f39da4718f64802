"""The timeline of one demo clip, shared by its voice and its face so lips move with syllables.

A clip is a run of syllables (a consonant then a vowel each) between leading and trailing
silence, and an expression that rises from near-neutral to its apex, holds, and partly relaxes
before the end (onset, apex, offset).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corpora.crema_d import SENTENCES, VIDEO_FPS, ClipName
from corpora.demo.actors import Actor
from corpora.demo.design import LEVEL_INTENSITY, VOICE_CUES

VOWELS = ("a", "e", "i", "o", "u")
# How far each vowel opens the mouth (1 = widest), used for the lips.
VOWEL_OPENING = {"a": 1.0, "e": 0.7, "i": 0.45, "o": 0.8, "u": 0.4}


@dataclass(frozen=True)
class Syllable:
    start: float  # consonant onset, seconds
    vowel_start: float
    end: float
    vowel: str
    stressed: bool


@dataclass(frozen=True)
class ClipTimeline:
    duration: float
    syllables: tuple[Syllable, ...]
    face_intensity: float
    voice_intensity: float
    apex_start: float  # expression reaches its apex
    apex_end: float  # expression starts to relax

    def expression(self, t: np.ndarray) -> np.ndarray:
        """Expression strength in [0, 1] at times ``t``: onset, apex, offset."""
        onset = _smoothstep(t / self.apex_start)
        offset = 1.0 - 0.6 * _smoothstep((t - self.apex_end) / max(self.duration - self.apex_end, 1e-3))
        return 0.15 + 0.85 * onset * offset

    def articulation(self, t: np.ndarray) -> np.ndarray:
        """Mouth opening from speech at times ``t``, in [0, 1]: open on vowels, shut between."""
        opening = np.zeros_like(t)
        for syllable in self.syllables:
            phase = (t - syllable.vowel_start) / (syllable.end - syllable.vowel_start)
            inside = (phase > 0) & (phase < 1)
            opening[inside] = np.maximum(opening[inside], VOWEL_OPENING[syllable.vowel] * np.sin(np.pi * phase[inside]))
        return opening


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def plan_clip(clip: ClipName, actor: Actor, rng: np.random.Generator) -> ClipTimeline:
    _, words = SENTENCES[clip.sentence]
    level = LEVEL_INTENSITY[clip.level]
    voice_intensity = level * actor.voice_expressiveness * rng.normal(1.0, 0.12)
    face_intensity = level * actor.face_expressiveness * rng.normal(1.0, 0.12)
    tempo = 1.0 + VOICE_CUES[clip.emotion].tempo * voice_intensity
    syllable_seconds = 1.0 / (actor.voice.syllables_per_second * tempo)

    t = rng.uniform(0.15, 0.3)
    syllables = []
    for word_syllables in words:
        stressed_index = int(rng.integers(word_syllables)) if word_syllables > 1 else 0
        for i in range(word_syllables):
            length = syllable_seconds * rng.uniform(0.8, 1.2) * (1.25 if i == word_syllables - 1 else 1.0)
            consonant = length * rng.uniform(0.2, 0.35)
            syllables.append(Syllable(t, t + consonant, t + length, str(rng.choice(VOWELS)), i == stressed_index))
            t += length
        t += rng.uniform(0.0, 0.06)  # a short gap between some words
    duration = t + rng.uniform(0.2, 0.35)
    duration = np.ceil(duration * VIDEO_FPS) / VIDEO_FPS  # a whole number of video frames
    speech_start, speech_end = syllables[0].start, syllables[-1].end
    return ClipTimeline(
        duration=float(duration),
        syllables=tuple(syllables),
        face_intensity=float(max(face_intensity, 0.1)),
        voice_intensity=float(max(voice_intensity, 0.1)),
        apex_start=float(speech_start + rng.uniform(0.2, 0.5)),
        apex_end=float(speech_start + (speech_end - speech_start) * rng.uniform(0.65, 0.9)),
    )
