"""CREMA-D: clip naming, codes and the layout of the distributed corpus.

CREMA-D (Cao et al., IEEE Trans. Affective Computing 2014) has 91 actors (ids 1001-1091) each
saying 12 sentences. A clip id is ``ActorID_Sentence_Emotion_Level``, e.g. ``1001_IEO_HAP_LO``;
only the sentence IEO carries the levels LO/MD/HI, every other clip has level XX.

Layout of a corpus folder (the real release and the generated demo corpus alike)::

    AudioWAV/<id>.wav                      16 kHz mono 16-bit PCM
    VideoFlash/<id>.flv                    480x360, 30 fps, with the clip's audio as a track
    processedResults/summaryTable.csv      winning vote and level per rating modality
    processedResults/tabulatedVotes.csv    vote counts per clip and rating modality
    VideoDemographics.csv                  ActorID, Age, Sex, Race, Ethnicity
    SentenceFilenames.csv                  Stimulus_Number, Filename

``read_corpus`` turns such a folder into manifest rows (see corpora.manifest). Label rules:
``intended`` (the emotion in the file name), and from the vote counts of one rating modality in
tabulatedVotes.csv (``audiovisual`` by default, as AuxFormer; ``voice`` or ``face``):
``plurality``, ``majority`` and ``distributional`` (see corpora.manifest.label_from_votes).
Computed on the audio-visual ratings, plurality leaves 420 clips without a label and majority
1,529. The clip list is what the media folders hold; a clip with only its WAV or only its FLV
is kept as a single-modality clip.

Split rule: speaker-independent by actor. ``partition`` gives partition 1-5 of
corpora.partitions.speaker_partition over all actors of the corpus and their sexes from
VideoDemographics.csv: 63/14/14 of CREMA-D's 91 actors in train/development/test, 7 male and 7
female actors in each held-out split; the demo corpus's 10 actors get 6/2/2, one of each sex
per held-out split. The same actors give the same partition whatever the label rule.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

from corpora.manifest import SEXES, ClipRecord, Corpus, CorpusError, SkippedFile, label_from_votes
from corpora.partitions import speaker_partition

AUDIO_DIR = "AudioWAV"
VIDEO_DIR = "VideoFlash"
RESULTS_DIR = "processedResults"
TABULATED_VOTES = f"{RESULTS_DIR}/tabulatedVotes.csv"
DEMOGRAPHICS = "VideoDemographics.csv"
SENTENCE_FILENAMES = "SentenceFilenames.csv"

AUDIO_SAMPLE_RATE = 16_000
VIDEO_SIZE = (480, 360)  # width, height
VIDEO_FPS = 30

# Sentence code -> (text, syllables per word). Order as in SentenceFilenames.csv.
SENTENCES: dict[str, tuple[str, tuple[int, ...]]] = {
    "IEO": ("It's eleven o'clock", (1, 3, 2)),
    "TIE": ("That is exactly what happened", (1, 1, 4, 1, 2)),
    "IOM": ("I'm on my way to the meeting", (1, 1, 1, 1, 1, 1, 2)),
    "IWW": ("I wonder what this is about", (1, 2, 1, 1, 1, 2)),
    "TAI": ("The airplane is almost full", (1, 2, 1, 2, 1)),
    "MTI": ("Maybe tomorrow it will be cold", (2, 3, 1, 1, 1, 1)),
    "IWL": ("I would like a new alarm clock", (1, 1, 1, 1, 1, 2, 1)),
    "ITH": ("I think I have a doctor's appointment", (1, 1, 1, 1, 1, 2, 3)),
    "DFA": ("Don't forget a jacket", (1, 2, 1, 2)),
    "ITS": ("I think I've seen this before", (1, 1, 1, 1, 1, 2)),
    "TSI": ("The surface is slick", (1, 2, 1, 1)),
    "WSI": ("We'll stop in a couple of minutes", (1, 1, 1, 1, 2, 1, 2)),
}
LEVELLED_SENTENCE = "IEO"
LEVELS = ("LO", "MD", "HI")
UNSPECIFIED_LEVEL = "XX"

# Emotion code -> its letter in the vote tables, in the order of tabulatedVotes.csv's vote
# columns A,D,F,H,N,S. Class names are in CLASS_OF_EMOTION.
EMOTIONS: dict[str, str] = {"ANG": "A", "DIS": "D", "FEA": "F", "HAP": "H", "NEU": "N", "SAD": "S"}
# Order in which an actor's clips of one sentence appear in SentenceFilenames.csv.
RECORDING_ORDER = ("NEU", "HAP", "SAD", "ANG", "FEA", "DIS")
VOTE_LETTERS = tuple(EMOTIONS.values())

# First column of tabulatedVotes.csv is 100000 * rating modality + clip number.
RATING_MODALITIES = {"voice": 1, "face": 2, "audiovisual": 3}


@dataclass(frozen=True, order=True)
class ClipName:
    """A parsed CREMA-D clip id."""

    actor: int
    sentence: str
    emotion: str
    level: str

    @property
    def id(self) -> str:
        return f"{self.actor}_{self.sentence}_{self.emotion}_{self.level}"

    @classmethod
    def parse(cls, clip_id: str) -> ClipName:
        """Parse ``ActorID_Sentence_Emotion_Level``; raise ValueError naming what is wrong."""
        parts = clip_id.split("_")
        if len(parts) != 4:
            raise ValueError(f"{clip_id!r} is not a CREMA-D clip id (ActorID_Sentence_Emotion_Level)")
        actor, sentence, emotion, level = parts
        if not actor.isdigit():
            raise ValueError(f"{clip_id!r}: actor id {actor!r} is not a number")
        if sentence not in SENTENCES:
            raise ValueError(f"{clip_id!r}: unknown sentence code {sentence!r}")
        if emotion not in EMOTIONS:
            raise ValueError(f"{clip_id!r}: unknown emotion code {emotion!r}")
        if level not in LEVELS + (UNSPECIFIED_LEVEL,):
            raise ValueError(f"{clip_id!r}: unknown level code {level!r}")
        return cls(int(actor), sentence, emotion, level)


def recorded_clips(actor: int, sentences: tuple[str, ...]) -> list[ClipName]:
    """The clips CREMA-D's protocol records for one actor, in the corpus's own order.

    IEO is said neutral once and in each other emotion at three levels; every other sentence
    once per emotion at an unspecified level (82 clips for all 12 sentences).
    """
    clips = []
    for sentence in sentences:
        for emotion in RECORDING_ORDER:
            if sentence == LEVELLED_SENTENCE and emotion != "NEU":
                clips += [ClipName(actor, sentence, emotion, level) for level in LEVELS]
            else:
                clips.append(ClipName(actor, sentence, emotion, UNSPECIFIED_LEVEL))
    return clips


# --- Reader: a CREMA-D folder (the real corpus or the demo corpus) -> manifest rows ---

CORPUS_NAME = "CREMA-D"
# Class names and order of the AuxFormer line's CREMA-D configuration and of its published
# partition files, so that manifests, models and reference partitions line up.
CLASSES = ("angry", "sad", "disgust", "fear", "neutral", "happy")
CLASS_OF_EMOTION = {"ANG": "angry", "SAD": "sad", "DIS": "disgust", "FEA": "fear", "NEU": "neutral", "HAP": "happy"}
LABEL_RULES = ("intended", "plurality", "majority", "distributional")
DEFAULT_LABEL_RULE = "majority"  # the rule of the published reference partitions
DEFAULT_RATINGS = "audiovisual"
VOTE_CLIP_COLUMN = "fileName"


def read_corpus(root: Path, label_rule: str = DEFAULT_LABEL_RULE, ratings: str = DEFAULT_RATINGS) -> Corpus:
    """Every clip of a CREMA-D folder with its label under ``label_rule``, not yet split."""
    if label_rule not in LABEL_RULES:
        raise CorpusError(f"unknown label rule {label_rule!r} for CREMA-D; choose one of {', '.join(LABEL_RULES)}")
    if ratings not in RATING_MODALITIES:
        raise CorpusError(f"unknown rating modality {ratings!r} for CREMA-D; "
                          f"choose one of {', '.join(RATING_MODALITIES)}")
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus folder not found; give the folder that holds {AUDIO_DIR}/ and {VIDEO_DIR}/")
    if not (root / AUDIO_DIR).is_dir() and not (root / VIDEO_DIR).is_dir():
        raise CorpusError(f"{root}: has neither {AUDIO_DIR}/ nor {VIDEO_DIR}/; give the top folder of a CREMA-D corpus")
    media, skipped = _find_media(root)
    sexes = _read_sexes(root / DEMOGRAPHICS)
    votes = {} if label_rule == "intended" else _read_votes(root / TABULATED_VOTES, ratings)
    clips = [_clip_record(name, files, sexes, votes, label_rule) for name, files in sorted(media.items())]
    return Corpus(CORPUS_NAME, root, CLASSES, label_rule, ratings if votes else "", clips, skipped)


def partition(clips: list[ClipRecord], index: int) -> dict[str, str]:
    """Actor -> split for partition ``index`` (the split rule in the module docstring)."""
    return speaker_partition({clip.speaker: clip.sex for clip in clips}, index)


def _find_media(root: Path) -> tuple[dict[ClipName, dict[str, str]], list[SkippedFile]]:
    media: dict[ClipName, dict[str, str]] = {}
    skipped = []
    for kind, folder, suffix in (("audio", AUDIO_DIR, ".wav"), ("video", VIDEO_DIR, ".flv")):
        for path in sorted((root / folder).glob(f"*{suffix}")):
            relative = path.relative_to(root).as_posix()
            try:
                name = ClipName.parse(path.stem)
            except ValueError as error:
                skipped.append(SkippedFile(relative, str(error)))
                continue
            media.setdefault(name, {})[kind] = relative
    return media, skipped


def _read_sexes(path: Path) -> dict[int, str]:
    if not path.is_file():
        raise CorpusError(f"{path} not found: CREMA-D's {DEMOGRAPHICS} (each actor's sex) must be in the corpus folder")
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        if not {"ActorID", "Sex"} <= set(reader.fieldnames or ()):
            raise CorpusError(f"{path}: no ActorID and Sex columns; is this CREMA-D's {DEMOGRAPHICS}?")
        sexes = {}
        for line, row in enumerate(reader, start=2):
            if not (row["ActorID"] or "").isdigit() or row["Sex"] not in SEXES:
                raise CorpusError(f"{path} line {line}: expected an actor number and Male or Female, "
                                  f"got {row['ActorID']!r}, {row['Sex']!r}")
            sexes[int(row["ActorID"])] = row["Sex"]
    return sexes


def _read_votes(path: Path, ratings: str) -> dict[str, tuple[int, ...]]:
    """Clip id -> vote counts in CLASSES order, from the rows of one rating modality."""
    if not path.is_file():
        raise CorpusError(f"{path} not found: perceived-label rules need CREMA-D's {TABULATED_VOTES}; "
                          "put it there, or use --label-rule intended")
    letter_of_class = {CLASS_OF_EMOTION[code]: letter for code, letter in EMOTIONS.items()}
    wanted = RATING_MODALITIES[ratings]
    votes = {}
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        header = reader.fieldnames or []
        if not header or not set(VOTE_LETTERS) | {VOTE_CLIP_COLUMN} <= set(header):
            raise CorpusError(f"{path}: expected the columns {','.join(VOTE_LETTERS)},{VOTE_CLIP_COLUMN}; "
                              f"is this CREMA-D's {TABULATED_VOTES}?")
        for line, row in enumerate(reader, start=2):
            try:
                modality = int(row[header[0]]) // 100_000
                counts = tuple(int(row[letter_of_class[c]]) for c in CLASSES)
            except (TypeError, ValueError):
                raise CorpusError(f"{path} line {line}: expected a row number and six vote counts; "
                                  f"is this CREMA-D's {TABULATED_VOTES}?") from None
            if modality == wanted:
                votes[row[VOTE_CLIP_COLUMN]] = counts
    if not votes:
        raise CorpusError(f"{path}: no rows of the {ratings} ratings (first column {wanted}xxxxx); "
                          f"is this CREMA-D's {TABULATED_VOTES}?")
    return votes


def _clip_record(name: ClipName, files: dict[str, str], sexes: dict[int, str],
                 votes: dict[str, tuple[int, ...]], label_rule: str) -> ClipRecord:
    intended = CLASS_OF_EMOTION[name.emotion]
    record = ClipRecord(clip_id=name.id, audio_path=files.get("audio", ""), video_path=files.get("video", ""),
                        speaker=str(name.actor), sex=sexes.get(name.actor, ""), intended=intended,
                        extra={"sentence": name.sentence, "level": name.level})
    if label_rule == "intended":
        return replace(record, label=intended)
    if name.id not in votes:
        return replace(record, excluded="no votes")
    decision = label_from_votes(votes[name.id], CLASSES, label_rule)
    return replace(record, label=decision.label, soft_label=decision.soft_label, excluded=decision.excluded)
