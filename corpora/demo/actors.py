"""The demo corpus's actors: identity, how each one looks, and how each one sounds.

Every actor is drawn from the corpus seed and its own id alone, so an actor is the same whatever
the corpus size. Actors differ in face geometry, colouring, framing and resting expression, and
in voice pitch, speaking rate and how strongly they express emotion in face and in voice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corpora.crema_d import VIDEO_SIZE

FIRST_ACTOR_ID = 1001

# Colours are BGR, as OpenCV draws them.
SKIN_TONES = ((203, 222, 246), (170, 200, 235), (140, 180, 225), (100, 145, 198), (70, 105, 160), (45, 70, 115))
HAIR_COLOURS = ((20, 20, 25), (30, 45, 70), (40, 75, 120), (90, 150, 200), (40, 60, 150), (150, 150, 155))
IRIS_COLOURS = ((60, 40, 20), (90, 120, 40), (120, 90, 30), (40, 60, 100))
HAIR_STYLES = ("short", "long", "crew")
MIN_BACKGROUND_CONTRAST = 45  # grey levels between face and backdrop
RACES = (("Caucasian", 0.55), ("African American", 0.25), ("Asian", 0.1), ("Unknown", 0.1))


@dataclass(frozen=True)
class FaceStyle:
    centre: tuple[float, float]  # face centre in the frame, pixels
    half_width: float
    half_height: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    shirt: tuple[int, int, int]
    background_top: tuple[int, int, int]
    background_bottom: tuple[int, int, int]
    eye_spacing: float  # eye centre from the midline, fraction of the half-width
    eye_height: float  # eye centre above the face centre, fraction of the half-height
    eye_width: float  # fraction of the half-width
    eye_opening: float  # fraction of the half-height
    brow_gap: float  # brow above the eye, fraction of the half-height
    brow_thickness: int
    mouth_height: float  # mouth below the face centre, fraction of the half-height
    mouth_width: float  # half-width of the mouth, fraction of the face half-width
    lip_thickness: float  # pixels
    # Resting expression: actors' idiosyncrasies, of the size of the subtle emotion cues.
    rest_mouth_curve: float
    rest_brow_tilt: float
    rest_brow_raise: float
    rest_eye_open: float
    head_sway: float  # amplitude of small head motion, pixels


@dataclass(frozen=True)
class VoiceStyle:
    f0_hz: float  # neutral pitch level
    f0_range_semitones: float  # neutral intonation excursion
    syllables_per_second: float
    formant_scale: float  # vocal tract length: >1 shorter tract, higher formants
    tension: float  # habitual voice quality
    room_noise_db: float  # background noise level below the voice


@dataclass(frozen=True)
class Actor:
    actor_id: int
    sex: str
    age: int
    race: str
    ethnicity: str
    face: FaceStyle
    voice: VoiceStyle
    face_expressiveness: float
    voice_expressiveness: float


def actor_rng(seed: int, actor_id: int) -> np.random.Generator:
    return np.random.default_rng([seed, actor_id])


def make_actors(count: int, seed: int) -> list[Actor]:
    """``count`` actors from id 1001 on, alternating sexes as evenly as the count allows."""
    return [make_actor(FIRST_ACTOR_ID + i, "Female" if i % 2 else "Male", seed) for i in range(count)]


def make_actor(actor_id: int, sex: str, seed: int) -> Actor:
    rng = actor_rng(seed, actor_id)
    race = rng.choice([r for r, _ in RACES], p=[p for _, p in RACES])
    return Actor(
        actor_id=actor_id,
        sex=sex,
        age=int(rng.integers(20, 75)),
        race=str(race),
        ethnicity="Hispanic" if rng.random() < 0.12 else "Not Hispanic",
        face=_face_style(rng, sex),
        voice=_voice_style(rng, sex),
        face_expressiveness=float(rng.uniform(0.7, 1.25)),
        voice_expressiveness=float(rng.uniform(0.7, 1.25)),
    )


def _colour(rng: np.random.Generator, palette, jitter: int) -> tuple[int, int, int]:
    base = np.array(palette[rng.integers(len(palette))], dtype=float)
    return tuple(int(v) for v in np.clip(base + rng.integers(-jitter, jitter + 1, 3), 0, 255))


def _face_style(rng: np.random.Generator, sex: str) -> FaceStyle:
    width, height = VIDEO_SIZE
    half_width = rng.uniform(68, 92)
    half_height = half_width * rng.uniform(1.2, 1.38)
    centre = (width / 2 + rng.uniform(-45, 45), height / 2 + rng.uniform(-8, 22))
    skin = _colour(rng, SKIN_TONES, 8)
    lips = tuple(int(c) for c in np.clip(np.array(skin) * [0.7, 0.62, 0.95] + [10, 0, 25], 0, 255))
    background = _background_colour(rng, skin)
    return FaceStyle(
        centre=centre,
        half_width=half_width,
        half_height=half_height,
        skin=skin,
        hair=_colour(rng, HAIR_COLOURS, 10),
        hair_style=str(rng.choice(HAIR_STYLES, p=[0.4, 0.45, 0.15] if sex == "Female" else [0.5, 0.1, 0.4])),
        iris=_colour(rng, IRIS_COLOURS, 15),
        lips=lips,
        shirt=tuple(int(c) for c in rng.integers(20, 230, 3)),
        background_top=tuple(int(c) for c in background),
        background_bottom=tuple(int(c) for c in np.clip(background * rng.uniform(0.6, 0.9), 0, 255)),
        eye_spacing=rng.uniform(0.36, 0.44),
        eye_height=rng.uniform(0.12, 0.2),
        eye_width=rng.uniform(0.17, 0.22),
        eye_opening=rng.uniform(0.065, 0.085),
        brow_gap=rng.uniform(0.13, 0.18),
        brow_thickness=int(rng.integers(4, 8)),
        mouth_height=rng.uniform(0.48, 0.56),
        mouth_width=rng.uniform(0.28, 0.36),
        lip_thickness=rng.uniform(4.0, 7.0),
        rest_mouth_curve=rng.normal(0.0, 0.12),
        rest_brow_tilt=rng.normal(0.0, 0.12),
        rest_brow_raise=rng.normal(0.0, 0.02),
        rest_eye_open=rng.normal(0.0, 0.1),
        head_sway=rng.uniform(1.5, 4.0),
    )


def _luminance(bgr) -> float:
    return 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]


def _background_colour(rng: np.random.Generator, skin) -> np.ndarray:
    """A backdrop clearly lighter or darker than the face: a face that merges into its background
    in grey levels is lost by luminance-based detectors (and by real cameras)."""
    colour = rng.integers(60, 200, 3).astype(float)
    gap = _luminance(colour) - _luminance(skin)
    if abs(gap) < MIN_BACKGROUND_CONTRAST:
        direction = 1.0 if _luminance(skin) < 128 else -1.0
        colour = np.clip(colour + direction * (MIN_BACKGROUND_CONTRAST + abs(gap)), 20, 235)
    return colour.astype(int)


def _voice_style(rng: np.random.Generator, sex: str) -> VoiceStyle:
    female = sex == "Female"
    return VoiceStyle(
        f0_hz=rng.uniform(175, 240) if female else rng.uniform(95, 140),
        f0_range_semitones=rng.uniform(2.0, 3.5),
        syllables_per_second=rng.uniform(4.0, 5.2),
        formant_scale=rng.uniform(1.1, 1.2) if female else rng.uniform(0.95, 1.03),
        tension=rng.normal(0.0, 0.3),
        room_noise_db=rng.uniform(24, 34),
    )
