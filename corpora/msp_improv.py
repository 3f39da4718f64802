"""MSP-IMPROV: file names, Evaluation.txt, and the reader that turns the corpus into manifest rows.

MSP-IMPROV (Busso et al., "MSP-IMPROV: An acted corpus of dyadic interactions to study emotion
perception", IEEE Trans. Affective Computing 2017) is licensed by its authors; no copy was
available while this was written. What the code relies on, and where each fact comes from:

File names (``MSP-IMPROV-S01A-F02-R-FF01``), checked on all 8,385 names of the partition files
published with the VAVL code (github ilucasgoncalves/VAVL,
VAVL/data/MSP-IMPROV/labels_consensus_EmoP_4class_D/labels_consensus_1.csv, also in
../shared/corpora/msp-improv/reference-partition-1-dimensional.csv):

- ``S01A``: ``S``, the target sentence 01-20, and the emotion the scenario was written to
  elicit: A angry, H happy, S sad, N neutral (Strong-AI-Lab/emotion,
  datasets/MSP-IMPROV/process.py reads characters 12-13 as the sentence and 14 as the acted label).
- ``F02``: the speaker's sex (F/M) and session 01-06. Each session is one dyad, one female and
  one male actor, so the sex and session name the actor (12 actors). The same script takes
  characters 16-18 as the speaker, the first as the gender, the last two as the session.
- ``R``: the recording scenario, one of P, R, S, T. Their meaning is matched by counts to Table
  3 of the corpus paper (target sentence improvised 652, target sentence read 620, other
  sentences of the improvisations 4,381, natural interaction 2,785 speaking turns) against the
  names in the VAVL file (T 650, R 620, S 4,347, P 2,768): T target-improvised, R target-read,
  S other-improvised, P natural-interaction. Inferred, not read in a document of the corpus.
- ``FF01``: two sex letters (FM or MF in the dyadic scenarios, FF or MM in the read one, where
  the speaker is alone) and a two-digit turn number; kept only as part of the clip id.

Layout: audio (.wav) and video (.avi) per session, e.g. ``session1/S01A/P/<name>.avi`` and
``.wav`` (Strong-AI-Lab/emotion, process.py docstring), or under ``Audio/`` and ``Video/`` top
folders in other copies; ``Evaluation.txt`` at the top. The reader therefore finds media by name
anywhere below the corpus folder and pairs a clip's .wav and .avi by name.

Evaluation.txt (format as parsed by Strong-AI-Lab/emotion, datasets/MSP-IMPROV/process.py, and
by the regular expressions of other public loaders): one block per clip, blocks separated by
blank lines. The block's first line names the video and gives the consensus category and the
mean dimensional scores::

    UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:3.000000; V:1.500000; D:3.250000 ; N:3.500000;

consensus A angry, H happy, S sad, N neutral, O other, X no agreement (that script maps X to
"unknown"; the paper's Table 4 has "no agreement"); any score may be NaN. Each further line is
one evaluator::

    <evaluator id>; <Angry|Happy|Sad|Neutral|Other>; <other emotions, free text>; A:4; V:2; D:3; N:3;

The same evaluator can appear twice for one clip (that script drops the copies); the first is
kept. The file names the video ``UTD-IMPROV-<name>.avi``; media files are ``MSP-IMPROV-<name>``.
The evaluations are of the recordings as videos; they are recorded as ``audiovisual`` ratings.

Label rules, four classes: ``consensus`` (the block's category; O and X excluded), ``intended``
(from the file name), and from the evaluators' choices ``plurality``, ``majority`` and
``distributional`` (corpora.manifest.label_from_votes; "Other" choices count in the total, not
in the class probabilities).

Split rule: speaker-independent by session (each session is one male and one female actor, so
every split is balanced by sex). Partition k uses the sessions of the k-th partition file
published with VAVL (same repository, labels_consensus_{1..5}.csv): four sessions train, one
development, one test:

    partition        1  2  3  4  5
    development      4  2  1  6  5
    test             5  3  2  1  6

Not checked on the real release: the layout, Evaluation.txt itself (its exact spacing, the
evaluator-line format and the O/X letters), and the clip and label counts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from corpora.manifest import ClipRecord, Corpus, CorpusError, SkippedFile, label_from_votes
from corpora.partitions import PartitionError, check_partition_index

CORPUS_NAME = "MSP-IMPROV"
EVALUATION_FILE = "Evaluation.txt"
CLASSES = ("angry", "sad", "neutral", "happy")
CLASS_OF_LETTER = {"A": "angry", "H": "happy", "S": "sad", "N": "neutral"}
CONSENSUS_EXCLUDED = {"O": "consensus other", "X": "no agreement"}
SCENARIOS = {"T": "target-improvised", "R": "target-read", "S": "other-improvised", "P": "natural-interaction"}
SEX_OF_LETTER = {"F": "Female", "M": "Male"}
SESSIONS = (1, 2, 3, 4, 5, 6)
# Partition -> (development session, test session), from the five VAVL partition files.
HELD_OUT_SESSIONS = {1: (4, 5), 2: (2, 3), 3: (1, 2), 4: (6, 1), 5: (5, 6)}
LABEL_RULES = ("consensus", "intended", "plurality", "majority", "distributional")
DEFAULT_LABEL_RULE = "consensus"
RATINGS = "audiovisual"
MEDIA_SUFFIXES = {".wav": "audio", ".avi": "video"}
EVALUATOR_CHOICES = {"angry": "angry", "happy": "happy", "sad": "sad", "neutral": "neutral", "other": "other"}

NAME_PATTERN = re.compile(
    r"MSP-IMPROV-S(?P<sentence>\d{2})(?P<emotion>[AHSN])-(?P<sex>[FM])(?P<session>\d{2})"
    r"-(?P<scenario>[PRST])-(?P<pair>[FM]{2})(?P<turn>\d{2})")
_SCORE = r"\s*(?:\d+(?:\.\d+)?|NaN)\s*"
HEADER_PATTERN = re.compile(
    rf"UTD-IMPROV-(?P<name>[A-Za-z0-9-]+)\.avi;\s*(?P<consensus>[A-Z]);\s*A:{_SCORE};\s*V:{_SCORE};"
    rf"\s*D:{_SCORE};\s*N:{_SCORE};")
EVALUATOR_SCORES = ("A:", "V:", "D:", "N:")


@dataclass(frozen=True)
class ImprovName:
    """A parsed MSP-IMPROV clip name."""

    sentence: int
    emotion: str  # the class the scenario was written to elicit
    sex: str
    session: int
    scenario: str
    clip_id: str

    @property
    def speaker(self) -> str:
        return f"{self.sex[0]}{self.session:02d}"

    @classmethod
    def parse(cls, name: str) -> ImprovName:
        """Parse ``MSP-IMPROV-S01A-F02-R-FF01`` (a ``.wav`` suffix is allowed); ValueError if not."""
        clip_id = name.removesuffix(".wav")
        match = NAME_PATTERN.fullmatch(clip_id)
        if match is None:
            raise ValueError(f"{name!r} is not an MSP-IMPROV clip name (MSP-IMPROV-S01A-F01-P-FM01)")
        session = int(match["session"])
        if session not in SESSIONS:
            raise ValueError(f"{name!r}: session {session} is not 1-6")
        return cls(int(match["sentence"]), CLASS_OF_LETTER[match["emotion"]], SEX_OF_LETTER[match["sex"]],
                   session, SCENARIOS[match["scenario"]], clip_id)


@dataclass
class Evaluation:
    """One block of Evaluation.txt."""

    consensus: str
    choices: dict[str, str]  # evaluator -> choice, first occurrence kept


def read_evaluations(path: Path) -> tuple[dict[str, Evaluation], list[SkippedFile]]:
    """Clip id (``MSP-IMPROV-...``) -> its evaluation block; blocks whose name does not parse are skipped."""
    if not path.is_file():
        raise CorpusError(f"{path} not found: MSP-IMPROV's {EVALUATION_FILE} must be at the top of the corpus "
                          "folder; point --corpus-dir there, or use --label-rule intended")
    evaluations: dict[str, Evaluation] = {}
    skipped = []
    current: Evaluation | None = None
    expected = ("expected 'UTD-IMPROV-<name>.avi; <A|H|S|N|O|X>; A:..; V:..; D:.. ; N:..;' or "
                "'<evaluator>; <Angry|Happy|Sad|Neutral|Other>; ...; A:..; V:..; D:..; N:..;'")
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line:
            current = None
            continue
        header = HEADER_PATTERN.fullmatch(line)
        if header:
            clip_id = f"MSP-IMPROV-{header['name']}"
            try:
                ImprovName.parse(clip_id)
            except ValueError as error:
                skipped.append(SkippedFile(f"{EVALUATION_FILE} line {number}", str(error)))
                current = Evaluation("", {})  # its evaluator lines are read and dropped
                continue
            if clip_id in evaluations:
                raise CorpusError(f"{path} line {number}: second block for {clip_id}; "
                                  f"is this MSP-IMPROV's {EVALUATION_FILE}?")
            current = evaluations[clip_id] = Evaluation(header["consensus"], {})
            continue
        evaluator, choice = _evaluator_line(line)
        if current is None or evaluator is None:
            raise CorpusError(f"{path} line {number}: {expected}")
        current.choices.setdefault(evaluator, choice)
    return evaluations, skipped


def _evaluator_line(line: str) -> tuple[str | None, str]:
    fields = [part.strip() for part in line.split(";")]
    if fields and fields[-1] == "":
        fields.pop()
    if len(fields) < 6 or tuple(f[:2] for f in fields[-4:]) != EVALUATOR_SCORES:
        return None, ""
    choice = EVALUATOR_CHOICES.get(fields[1].lower())
    return (fields[0], choice) if fields[0] and choice else (None, "")


def read_corpus(root: Path, label_rule: str = DEFAULT_LABEL_RULE, ratings: str = RATINGS) -> Corpus:
    """Every clip of an MSP-IMPROV folder with its label under ``label_rule``, not yet split."""
    if label_rule not in LABEL_RULES:
        raise CorpusError(f"unknown label rule {label_rule!r} for MSP-IMPROV; choose one of {', '.join(LABEL_RULES)}")
    if ratings != RATINGS:
        raise CorpusError(f"MSP-IMPROV has only {RATINGS} ratings (its {EVALUATION_FILE}); "
                          f"--ratings {ratings} applies to CREMA-D")
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus folder not found; give the MSP-IMPROV folder that holds {EVALUATION_FILE}")
    media, skipped = _find_media(root)
    if not media:
        raise CorpusError(f"{root}: no MSP-IMPROV .wav or .avi files below it; give the top folder of the corpus")
    evaluations: dict[str, Evaluation] = {}
    if label_rule != "intended":
        evaluations, unreadable = read_evaluations(root / EVALUATION_FILE)
        skipped += unreadable
        skipped += [SkippedFile(f"{EVALUATION_FILE}: {clip_id}", "evaluated but no media file")
                    for clip_id in sorted(set(evaluations) - {name.clip_id for name in media})]
    clips = [_clip_record(name, files, evaluations, label_rule)
             for name, files in sorted(media.items(), key=lambda item: item[0].clip_id)]
    return Corpus(CORPUS_NAME, root, CLASSES, label_rule, RATINGS if evaluations else "", clips, skipped)


def partition(clips: list[ClipRecord], index: int) -> dict[str, str]:
    """Speaker -> split for partition ``index``: whole sessions, as the VAVL partitions."""
    check_partition_index(index)
    development, test = HELD_OUT_SESSIONS[index]
    present = {int(clip.extra["session"]) for clip in clips}
    for split, session in (("development", development), ("test", test)):
        if session not in present:
            raise PartitionError(f"partition {index} puts session {session} in {split}, "
                                 "but the corpus folder has no clip of that session")
    held_out = {development: "development", test: "test"}
    return {clip.speaker: held_out.get(int(clip.extra["session"]), "train") for clip in clips}


def _find_media(root: Path) -> tuple[dict[ImprovName, dict[str, str]], list[SkippedFile]]:
    media: dict[ImprovName, dict[str, str]] = {}
    skipped = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file()):
        relative = path.relative_to(root).as_posix()
        try:
            name = ImprovName.parse(path.stem)
        except ValueError as error:
            skipped.append(SkippedFile(relative, str(error)))
            continue
        files = media.setdefault(name, {})
        kind = MEDIA_SUFFIXES[path.suffix.lower()]
        if kind in files:
            skipped.append(SkippedFile(relative, f"duplicate of {files[kind]}"))
        else:
            files[kind] = relative
    return media, skipped


def _clip_record(name: ImprovName, files: dict[str, str], evaluations: dict[str, Evaluation],
                 label_rule: str) -> ClipRecord:
    record = ClipRecord(clip_id=name.clip_id, audio_path=files.get("audio", ""), video_path=files.get("video", ""),
                        speaker=name.speaker, sex=name.sex, intended=name.emotion,
                        extra={"sentence": f"S{name.sentence:02d}", "session": f"{name.session:02d}",
                               "scenario": name.scenario})
    if label_rule == "intended":
        return replace(record, label=name.emotion)
    evaluation = evaluations.get(name.clip_id)
    if evaluation is None:
        return replace(record, excluded="not evaluated")
    choices = list(evaluation.choices.values())
    counts = [choices.count(c) for c in CLASSES]
    if label_rule == "consensus":
        soft = label_from_votes(counts, CLASSES, "distributional", choices.count("other")).soft_label
        if evaluation.consensus in CLASS_OF_LETTER:
            return replace(record, label=CLASS_OF_LETTER[evaluation.consensus], soft_label=soft)
        return replace(record, soft_label=soft,
                       excluded=CONSENSUS_EXCLUDED.get(evaluation.consensus, f"consensus {evaluation.consensus}"))
    decision = label_from_votes(counts, CLASSES, label_rule, choices.count("other"))
    return replace(record, label=decision.label, soft_label=decision.soft_label, excluded=decision.excluded)
