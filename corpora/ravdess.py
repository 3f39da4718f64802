"""RAVDESS: clip naming, codes and the layout of its public release.

The Ryerson Audio-Visual Database of Emotional Speech and Song (Livingstone and Russo, PLoS ONE
2018; Zenodo record 1188976) has 24 actors, odd-numbered male and even-numbered female. Its
archives unpack into ``Actor_01/`` to ``Actor_24/``; each file is named by seven two-digit
codes, ``modality-vocalchannel-emotion-intensity-statement-repetition-actor``, e.g.
``01-01-03-02-01-01-12.mp4``:

- modality: 01 full audio-video (``.mp4``), 02 video only (``.mp4``), 03 audio only (``.wav``);
- vocal channel: 01 speech, 02 song (Actor_18 has no song files);
- emotion: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised;
- intensity: 01 normal, 02 strong (neutral is normal only);
- statement: 01 "Kids are talking by the door", 02 "Dogs are sitting by the door";
- repetition: 01 or 02; actor: 01-24.

``read_corpus`` keeps the speech trials: one clip per full audio-video ``.mp4`` (its id is the
file name without the extension), with the audio-only ``.wav`` of the same trial as its audio
when there is one, else the mp4's own audio track; a ``.wav`` whose trial has no mp4 is an
audio-only clip. Video-only files and song are left out. Names that do not parse are skipped
and reported.

Class names: the six emotions CREMA-D also has take CREMA-D's class names (corpora.crema_d:
``angry``, ``sad``, ``disgust``, ``fear`` for fearful, ``neutral``, ``happy``), so that a model
trained on one corpus is scored on the other by class name; the other two are ``calm`` and
``surprise``. Label sets: ``all`` (the default), the eight classes in RAVDESS's code order;
``crema6``, the six CREMA-D classes in CREMA-D's class order, calm and surprised clips excluded.
The label is the intended emotion (RAVDESS's perceptual ratings are not in the release's archives).

Split rule: speaker-independent by actor. ``partition`` gives partition 1-5 of
corpora.partitions.speaker_partition over the actors and their sexes (from the actor number):
24 actors give 16/4/4 in train/development/test, two of each sex per held-out split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corpora import crema_d
from corpora.folder import has_audio_track
from corpora.manifest import ClipRecord, Corpus, CorpusError, SkippedFile
from corpora.partitions import speaker_partition

CORPUS_NAME = "RAVDESS"
ACTOR_DIR = "Actor_{:02d}"
ACTORS = range(1, 25)
FULL_AV, VIDEO_ONLY, AUDIO_ONLY = "01", "02", "03"
SPEECH, SONG = "01", "02"
SUFFIX = {FULL_AV: ".mp4", VIDEO_ONLY: ".mp4", AUDIO_ONLY: ".wav"}
# RAVDESS emotion code -> CREMA-D's emotion code, for the six emotions both corpora have.
CREMA_CODE = {"01": "NEU", "03": "HAP", "04": "SAD", "05": "ANG", "06": "FEA", "07": "DIS"}
CLASS_OF_EMOTION = {code: crema_d.CLASS_OF_EMOTION[crema] for code, crema in CREMA_CODE.items()} | {
    "02": "calm", "08": "surprise"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = ("01", "02")
REPETITIONS = ("01", "02")
LABEL_SETS = {"all": tuple(CLASS_OF_EMOTION[code] for code in sorted(CLASS_OF_EMOTION)),
              "crema6": crema_d.CLASSES}
DEFAULT_LABEL_SET = "all"
LABEL_RULES = ("intended",)
OUTSIDE_LABEL_SET = "not in the label set"


@dataclass(frozen=True, order=True)
class TrialName:
    """A parsed RAVDESS file name."""

    modality: str
    channel: str
    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: str

    @property
    def id(self) -> str:
        return "-".join((self.modality, self.channel, self.emotion, self.intensity, self.statement,
                         self.repetition, self.actor))

    def with_modality(self, modality: str) -> TrialName:
        return TrialName(modality, *(getattr(self, name) for name in
                                     ("channel", "emotion", "intensity", "statement", "repetition", "actor")))

    @classmethod
    def parse(cls, stem: str) -> TrialName:
        """Parse the seven codes; raise ValueError naming what is wrong."""
        parts = stem.split("-")
        if len(parts) != 7 or not all(len(part) == 2 and part.isdigit() for part in parts):
            raise ValueError(f"{stem!r} is not a RAVDESS name (seven two-digit codes joined by '-')")
        name = cls(*parts)
        checks = ((name.modality, SUFFIX, "modality"), (name.channel, (SPEECH, SONG), "vocal channel"),
                  (name.emotion, CLASS_OF_EMOTION, "emotion"), (name.intensity, INTENSITIES, "intensity"),
                  (name.statement, STATEMENTS, "statement"), (name.repetition, REPETITIONS, "repetition"))
        for code, known, what in checks:
            if code not in known:
                raise ValueError(f"{stem!r}: unknown {what} code {code!r}")
        if int(name.actor) not in ACTORS:
            raise ValueError(f"{stem!r}: actor {name.actor} is not 01-24")
        return name

    @property
    def sex(self) -> str:
        return "Male" if int(self.actor) % 2 else "Female"


def file_name(name: TrialName) -> str:
    return f"{ACTOR_DIR.format(int(name.actor))}/{name.id}{SUFFIX[name.modality]}"


def read_corpus(root: Path, label_rule: str = "intended", ratings: str = "",
                label_set: str = DEFAULT_LABEL_SET) -> Corpus:
    """Every speech trial of a RAVDESS folder with its intended emotion, not yet split."""
    if label_rule not in LABEL_RULES:
        raise CorpusError(f"RAVDESS labels are the intended emotions: --label-rule {label_rule!r} does not apply; "
                          "leave it out")
    if ratings:
        raise CorpusError(f"RAVDESS has no ratings here: --ratings {ratings!r} does not apply; leave it out")
    if label_set not in LABEL_SETS:
        raise CorpusError(f"unknown --label-set {label_set!r} for RAVDESS; choose one of {', '.join(LABEL_SETS)}")
    folders = sorted(path for path in root.glob("Actor_*") if path.is_dir())
    if not folders:
        raise CorpusError(f"{root}: no Actor_01/ ... Actor_24/ folders; unpack RAVDESS's archives there "
                          "(or give the folder that holds them with --corpus-dir)")
    trials, skipped = _find_trials(root, folders)
    classes = LABEL_SETS[label_set]
    clips = [_clip_record(root, name, trials, classes) for name in sorted(trials) if name.modality != AUDIO_ONLY
             or name.with_modality(FULL_AV) not in trials]
    return Corpus(CORPUS_NAME, root, classes, label_rule, "", clips, skipped)


def partition(clips: list[ClipRecord], index: int) -> dict[str, str]:
    """Actor -> split for partition ``index`` (the split rule in the module docstring)."""
    return speaker_partition({clip.speaker: clip.sex for clip in clips}, index)


def _find_trials(root: Path, folders: list[Path]) -> tuple[dict[TrialName, str], list[SkippedFile]]:
    """The speech trials' full audio-video and audio-only files, by name."""
    trials: dict[TrialName, str] = {}
    skipped = []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in (".mp4", ".wav"):
                continue
            relative = path.relative_to(root).as_posix()
            try:
                name = TrialName.parse(path.stem)
            except ValueError as error:
                skipped.append(SkippedFile(relative, str(error)))
                continue
            if path.suffix.lower() != SUFFIX[name.modality]:
                skipped.append(SkippedFile(relative, f"modality {name.modality} is a {SUFFIX[name.modality]} file"))
            elif path.parent.name != ACTOR_DIR.format(int(name.actor)):
                skipped.append(SkippedFile(relative, f"actor {name.actor}'s file in {path.parent.name}/"))
            elif name.channel == SPEECH and name.modality != VIDEO_ONLY:
                trials[name] = relative
    return trials, skipped


def _clip_record(root: Path, name: TrialName, trials: dict[TrialName, str], classes: tuple[str, ...]) -> ClipRecord:
    video = trials[name] if name.modality == FULL_AV else ""
    audio = trials.get(name.with_modality(AUDIO_ONLY), "")
    if not audio and has_audio_track(root / video):
        audio = video
    intended = CLASS_OF_EMOTION[name.emotion]
    in_set = intended in classes
    return ClipRecord(clip_id=name.id, audio_path=audio, video_path=video, speaker=name.actor, sex=name.sex,
                      label=intended if in_set else "", excluded="" if in_set else OUTSIDE_LABEL_SET,
                      intended=intended, extra={"statement": name.statement, "intensity": INTENSITIES[name.intensity],
                                                "repetition": name.repetition})
