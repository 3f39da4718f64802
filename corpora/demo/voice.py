"""A source-filter voice for the demo corpus: one consonant-vowel unit per syllable.

The glottal source is a sawtooth at the pitch contour (intonation with phrase declination,
stressed-syllable accents, tremor and jitter), darkened or brightened by a one-pole filter for
voice quality and mixed with aspiration noise for breathiness; each vowel is shaped by three
formant resonators, each consonant is a band of noise. Emotion moves the pitch level and range,
tempo (through the timeline), loudness, tension, breathiness and tremor; room noise is added last.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

from corpora.crema_d import AUDIO_SAMPLE_RATE, ClipName
from corpora.demo.actors import Actor
from corpora.demo.design import VOICE_CUES
from corpora.demo.timeline import ClipTimeline

# Formant frequencies (F1, F2, F3) in Hz of an adult male vocal tract.
VOWEL_FORMANTS = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (300, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (320, 870, 2240),
}
FORMANT_BANDWIDTHS = (90, 110, 170)
SPEECH_RMS = 0.05  # a neutral voice at about -26 dBFS, so anger's +7 dB does not clip
NYQUIST = AUDIO_SAMPLE_RATE / 2


def synthesize(clip: ClipName, actor: Actor, timeline: ClipTimeline, rng: np.random.Generator) -> np.ndarray:
    """The clip's waveform, float32 in [-1, 1] at 16 kHz."""
    sr = AUDIO_SAMPLE_RATE
    n = int(round(timeline.duration * sr))
    t = np.arange(n) / sr
    cues = VOICE_CUES[clip.emotion].scaled(timeline.voice_intensity)
    # Prosody carries the emotion throughout, strongest at the expression's apex.
    strength = 0.6 + 0.4 * timeline.expression(t)

    f0 = _pitch_contour(t, cues, actor, timeline, strength, rng)
    phase = np.cumsum(f0) / sr
    source = 2.0 * (phase % 1.0) - 1.0
    tension = np.clip(actor.voice.tension + cues.tension, -1.5, 1.5)
    darkness = 0.55 - 0.25 * tension  # one-pole low-pass coefficient: higher is darker
    source = signal.lfilter([1 - darkness], [1, -darkness], source)
    breath = 0.08 + cues.breathiness
    source = source + breath * _band_noise(rng, n, 1000, 6000) * (0.5 + 0.5 * np.cos(2 * np.pi * phase))

    speech = np.zeros(n)
    for syllable in timeline.syllables:
        _add_consonant(speech, syllable.start, syllable.vowel_start, rng)
        _add_vowel(speech, source, syllable, actor.voice.formant_scale)
    gain_db = cues.loudness_db * strength + rng.normal(0.0, 0.7)
    speech *= SPEECH_RMS / _rms(speech) * 10 ** (gain_db / 20)

    noise = _band_noise(rng, n, 60, 7000) * SPEECH_RMS * 10 ** (-actor.voice.room_noise_db / 20)
    return np.tanh(speech + noise).astype(np.float32)


def _pitch_contour(t, cues, actor, timeline, strength, rng) -> np.ndarray:
    voice = actor.voice
    excursion = voice.f0_range_semitones * max(1.0 + cues.pitch_range, 0.2)
    # One pitch target per syllable: declination over the phrase, accents on stressed syllables.
    centres = np.array([(s.vowel_start + s.end) / 2 for s in timeline.syllables])
    progress = (centres - centres[0]) / max(centres[-1] - centres[0], 1e-3)
    targets = np.array([excursion * (0.9 if s.stressed else 0.0) for s in timeline.syllables])
    targets += -0.6 * excursion * progress + rng.normal(0.0, 0.25 * excursion, len(centres))
    semitones = np.interp(t, centres, targets)
    semitones = signal.filtfilt(*signal.butter(2, 8 / (AUDIO_SAMPLE_RATE / 2)), semitones)
    semitones += cues.pitch_semitones * strength
    semitones += cues.tremor * np.sin(2 * np.pi * rng.uniform(5.5, 7.5) * t + rng.uniform(0, 2 * np.pi))
    jitter = signal.lfilter([0.02], [1, -0.98], rng.normal(0.0, 1.0, len(t)))
    semitones += jitter * (0.6 + 2.0 * cues.breathiness)
    return voice.f0_hz * 2 ** (semitones / 12)


def _add_vowel(speech: np.ndarray, source: np.ndarray, syllable, formant_scale: float) -> None:
    sr = AUDIO_SAMPLE_RATE
    start, end = int(syllable.vowel_start * sr), int(syllable.end * sr)
    segment = source[start:end].copy()
    for formant, bandwidth in zip(VOWEL_FORMANTS[syllable.vowel], FORMANT_BANDWIDTHS):
        segment = signal.lfilter(*_resonator(min(formant * formant_scale, NYQUIST - 400), bandwidth), segment)
    envelope = np.sin(np.pi * np.linspace(0, 1, len(segment))) ** 0.5
    segment *= envelope * (1.4 if syllable.stressed else 1.0) / max(_rms(segment), 1e-9)
    speech[start:end] += segment


def _add_consonant(speech: np.ndarray, start_s: float, end_s: float, rng: np.random.Generator) -> None:
    sr = AUDIO_SAMPLE_RATE
    start, end = int(start_s * sr), int(end_s * sr)
    low = rng.choice([400.0, 1500.0, 3000.0])
    burst = _band_noise(rng, end - start, low, min(low * 2.5, NYQUIST - 200))
    speech[start:end] += 0.25 * burst * np.hanning(end - start)


def _resonator(frequency: float, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """A two-pole resonance with unit gain at its centre frequency."""
    r = np.exp(-np.pi * bandwidth / AUDIO_SAMPLE_RATE)
    theta = 2 * np.pi * frequency / AUDIO_SAMPLE_RATE
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    gain = abs(np.polyval(a[::-1], np.exp(-1j * theta)))
    return np.array([gain]), a


def _band_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    b, a = signal.butter(2, [low / NYQUIST, high / NYQUIST], btype="band")
    noise = signal.lfilter(b, a, rng.normal(0.0, 1.0, n))
    return noise / max(_rms(noise), 1e-9)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))
