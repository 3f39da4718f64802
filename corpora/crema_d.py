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
"""
from __future__ import annotations

from dataclasses import dataclass

AUDIO_DIR = "AudioWAV"
VIDEO_DIR = "VideoFlash"
RESULTS_DIR = "processedResults"
SUMMARY_TABLE = f"{RESULTS_DIR}/summaryTable.csv"
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

# Emotion code -> (vote letter in the vote tables, class name). The order is the order of the
# vote columns A,D,F,H,N,S in tabulatedVotes.csv.
EMOTIONS: dict[str, tuple[str, str]] = {
    "ANG": ("A", "anger"),
    "DIS": ("D", "disgust"),
    "FEA": ("F", "fear"),
    "HAP": ("H", "happy"),
    "NEU": ("N", "neutral"),
    "SAD": ("S", "sad"),
}
# Order in which an actor's clips of one sentence appear in SentenceFilenames.csv.
RECORDING_ORDER = ("NEU", "HAP", "SAD", "ANG", "FEA", "DIS")
VOTE_LETTERS = tuple(letter for letter, _ in EMOTIONS.values())

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
