"""Where the demo generator puts a clip's media: CREMA-D's layout, or RAVDESS's.

The clips are the same in both (drawn from the seed and the CREMA-D clip id); only their names,
folders and video container differ. In RAVDESS's layout (corpora.ravdess) actor 1001 + k - 1 is
actor k (odd male, even female, as the generator alternates them), CREMA-D's first two
sentences are RAVDESS's two statements, and CREMA-D's levels become an intensity and a
repetition: XX and LO normal, first repetition; MD normal, second; HI strong. Only the six
emotions CREMA-D has occur (no calm, no surprised), all speech.
"""
from __future__ import annotations

from pathlib import Path

from corpora import crema_d, ravdess
from corpora.crema_d import ClipName
from corpora.demo.actors import FIRST_ACTOR_ID

CREMA, RAVDESS = "crema", "ravdess"
LAYOUTS = (CREMA, RAVDESS)
DEFAULT_DIRS = {CREMA: Path("data/raw/demo"), RAVDESS: Path("data/raw/demo-ravdess")}
MAX_ACTORS = {CREMA: None, RAVDESS: len(ravdess.ACTORS)}
MAX_SENTENCES = {CREMA: len(crema_d.SENTENCES), RAVDESS: len(ravdess.STATEMENTS)}
RAVDESS_EMOTION = {crema: code for code, crema in ravdess.CREMA_CODE.items()}
# CREMA-D level -> RAVDESS intensity and repetition, so that IEO's three levels stay three trials.
RAVDESS_TRIAL = {crema_d.UNSPECIFIED_LEVEL: ("01", "01"), "LO": ("01", "01"), "MD": ("01", "02"), "HI": ("02", "01")}


def ravdess_name(clip: ClipName, modality: str) -> ravdess.TrialName:
    intensity, repetition = RAVDESS_TRIAL[clip.level]
    statement = ravdess.STATEMENTS[tuple(crema_d.SENTENCES).index(clip.sentence)]
    return ravdess.TrialName(modality, ravdess.SPEECH, RAVDESS_EMOTION[clip.emotion], intensity, statement,
                             repetition, f"{clip.actor - FIRST_ACTOR_ID + 1:02d}")


def audio_path(out: Path, clip: ClipName, layout: str) -> Path:
    if layout == RAVDESS:
        return out / ravdess.file_name(ravdess_name(clip, ravdess.AUDIO_ONLY))
    return out / crema_d.AUDIO_DIR / f"{clip.id}.wav"


def video_path(out: Path, clip: ClipName, layout: str) -> Path:
    if layout == RAVDESS:
        return out / ravdess.file_name(ravdess_name(clip, ravdess.FULL_AV))
    return out / crema_d.VIDEO_DIR / f"{clip.id}.flv"


def media_folders(out: Path, actor_ids: list[int], layout: str) -> list[Path]:
    if layout == RAVDESS:
        return [out / ravdess.ACTOR_DIR.format(actor - FIRST_ACTOR_ID + 1) for actor in actor_ids]
    return [out / crema_d.AUDIO_DIR, out / crema_d.VIDEO_DIR]
