"""Simulated perceptual ratings for the demo corpus, written as CREMA-D's vote tables.

Like CREMA-D's crowd-sourced evaluation, every clip is rated by about ten raters in each of three
ways: voice only, face only, and audio-visual. A rater picks one emotion and rates its intensity.
Raters mostly, not always, perceive the intended emotion: how often depends on how salient the
emotion is in the modality they get (see corpora.demo.design: a face-only rater often takes a sad
face for a neutral one) and on how intensely the clip expresses it; mistakes go mostly to the
emotion that modality confuses it with, then to neutral. Audio-visual raters combine both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpora.crema_d import EMOTIONS, RATING_MODALITIES, VOTE_LETTERS
from corpora.demo.design import FACE_CONFUSIONS, VOICE_CONFUSIONS

EMOTION_CODES = tuple(EMOTIONS)  # same order as VOTE_LETTERS
# How recognisable each emotion is at full intensity to raters of one modality. Tuned so that the
# vote statistics resemble CREMA-D's (audio-visual ratings of the default demo corpus: 4.4% of
# clips tied under the plurality rule, 21.5% without a majority; CREMA-D: 5.6% and 20.5%).
SALIENCE = {
    "face": {"NEU": 0.72, "SAD": 0.26, "ANG": 0.68, "DIS": 0.51, "HAP": 0.81, "FEA": 0.72},
    "voice": {"NEU": 0.56, "SAD": 0.64, "ANG": 0.53, "HAP": 0.45, "DIS": 0.26, "FEA": 0.6},
}
CONFUSIONS = {"face": FACE_CONFUSIONS, "voice": VOICE_CONFUSIONS}
AUDIOVISUAL_LAPSE = 0.25  # share of audio-visual responses given without integrating both cues


@dataclass(frozen=True)
class RatedClip:
    clip_id: str
    emotion: str
    face_intensity: float
    voice_intensity: float


@dataclass(frozen=True)
class Ratings:
    """One clip's responses in one rating modality."""

    choices: np.ndarray  # index into VOTE_LETTERS, one per rater
    levels: np.ndarray  # intensity 0-100, one per rater
    normalized_levels: np.ndarray  # the same with each rater's own bias removed


def perception(clip: RatedClip, modality: str) -> np.ndarray:
    """Probability that a rater of ``modality`` picks each emotion, in VOTE_LETTERS order."""
    if modality == "audiovisual":
        # Both cues at once: what either modality makes unlikely becomes unlikely.
        combined = perception(clip, "face") * perception(clip, "voice")
        return (1 - AUDIOVISUAL_LAPSE) * combined / combined.sum() + AUDIOVISUAL_LAPSE / len(combined)
    intensity = clip.face_intensity if modality == "face" else clip.voice_intensity
    clarity = 1.0 if clip.emotion == "NEU" else 1 / (1 + np.exp(-5 * (intensity - 0.45)))
    correct = SALIENCE[modality][clip.emotion] * clarity
    p = np.zeros(len(EMOTION_CODES))
    p[EMOTION_CODES.index(clip.emotion)] = correct
    # Mistakes: mostly the emotion this modality confuses it with, else often neutral, else any.
    mistaken = 1.0 - correct
    partner = CONFUSIONS[modality].get(clip.emotion)
    if partner is None and clip.emotion != "NEU":
        partner = "NEU"
    if partner is not None:
        p[EMOTION_CODES.index(partner)] += 0.6 * mistaken
        mistaken *= 0.4
    return p + mistaken / len(p)


def rate(clip: RatedClip, modality: str, rng: np.random.Generator) -> Ratings:
    raters = 7 + int(rng.binomial(6, 0.5))
    choices = rng.choice(len(VOTE_LETTERS), size=raters, p=perception(clip, modality))
    intensity = clip.face_intensity if modality == "face" else clip.voice_intensity
    if modality == "audiovisual":
        intensity = max(clip.face_intensity, clip.voice_intensity)
    bias = rng.normal(0.0, 8.0, raters)
    neutral = choices == EMOTION_CODES.index("NEU")
    felt = np.where(neutral, 60.0, 35.0 + 35.0 * intensity) + rng.normal(0.0, 14.0, raters)
    levels = np.clip(np.round(felt + bias), 1, 100)
    return Ratings(choices, levels, np.clip(felt, 0, 100))


def write_vote_tables(clips: list[RatedClip], results_dir: Path, seed: int) -> None:
    """Write ``tabulatedVotes.csv`` and ``summaryTable.csv`` in CREMA-D's formats."""
    results_dir.mkdir(parents=True, exist_ok=True)
    ratings = {
        modality: [rate(clip, modality, np.random.default_rng([seed, number, code]))
                   for number, clip in enumerate(clips, start=1)]
        for modality, code in RATING_MODALITIES.items()
    }
    tabulated = [_quoted(TABULATED_HEADER)]
    for modality, code in RATING_MODALITIES.items():
        for number, (clip, r) in enumerate(zip(clips, ratings[modality]), start=1):
            tabulated.append(_tabulated_row(100000 * code + number, clip.clip_id, r))
    _write_rows(results_dir / "tabulatedVotes.csv", tabulated)
    summary = [_quoted(SUMMARY_HEADER)]
    for number, clip in enumerate(clips, start=1):
        row = [f'"{number}"', f'"{clip.clip_id}"']
        for modality in ("voice", "face", "audiovisual"):
            vote, level = _winner(ratings[modality][number - 1])
            row += [f'"{vote}"', f'"{level}"']
        summary.append(row)
    _write_rows(results_dir / "summaryTable.csv", summary)


EMOTION_NAMES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")
TABULATED_HEADER = (
    ["", *VOTE_LETTERS, "fileName", "numResponses", "agreement", "emoVote", "meanEmoResp"]
    + [f"mean{name}Resp" for name in EMOTION_NAMES]
    + ["medianEmoResp", "meanEmoRespNorm"]
    + [f"mean{name}RespNorm" for name in EMOTION_NAMES]
    + ["medianEmoRespNorm"]
)
SUMMARY_HEADER = ["", "FileName", "VoiceVote", "VoiceLevel", "FaceVote", "FaceLevel", "MultiModalVote",
                  "MultiModalLevel"]


def _tabulated_row(index: int, clip_id: str, r: Ratings) -> list[str]:
    counts = np.bincount(r.choices, minlength=len(VOTE_LETTERS))
    vote, _ = _winner(r)
    return (
        [f'"{index}"', *(str(c) for c in counts), f'"{clip_id}"', str(len(r.choices)),
         _r_number(counts.max() / len(r.choices)), f'"{vote}"', _r_number(r.levels.mean())]
        + _per_emotion_means(r.choices, r.levels)
        + [_r_number(np.median(r.levels)), _r_number(r.normalized_levels.mean())]
        + _per_emotion_means(r.choices, r.normalized_levels)
        + [_r_number(np.median(r.normalized_levels))]
    )


def _per_emotion_means(choices: np.ndarray, levels: np.ndarray) -> list[str]:
    return [_r_number(levels[choices == k].mean()) if (choices == k).any() else "-1"
            for k in range(len(VOTE_LETTERS))]


def _winner(r: Ratings) -> tuple[str, str]:
    """The winning vote(s) and their mean level, ties joined by ':' as CREMA-D writes them."""
    counts = np.bincount(r.choices, minlength=len(VOTE_LETTERS))
    winners = np.flatnonzero(counts == counts.max())
    levels = [r.levels[r.choices == k].mean() for k in winners]
    vote = ":".join(VOTE_LETTERS[k] for k in winners)
    if len(winners) == 1:
        return vote, _r_number(round(levels[0], 2))
    return vote, ":".join(f"{level:.2f}" for level in levels)


def _r_number(x: float) -> str:
    """A number as R's write.csv prints it: 15 significant digits, no trailing zeros."""
    return f"{float(x):.15g}"


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    """CSV lines already quoted as R quotes them (strings quoted, numbers bare)."""
    path.write_text("".join(",".join(row) + "\n" for row in rows))


def _quoted(names: list[str]) -> list[str]:
    return [f'"{name}"' for name in names]
