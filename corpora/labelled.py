"""Your own labelled corpus: a folder of clips and a CSV that labels them (``DATASET=labelled``).

The labels file (``--labels``, by default ``labels.csv`` in the corpus folder) is UTF-8 CSV,
comma-separated, one clip a line, with the columns:

``video``, ``audio``
    the clip's video and audio files, relative to the corpus folder; either may be empty for a
    one-modality clip. A clip without an audio file takes the video's own audio track when it has one.
``label``
    the clip's class; the classes are the labels the file uses, sorted by name.
``speaker``
    who speaks in the clip: the unit of the speaker-independent split.
``split`` (optional)
    ``train``, ``dev`` (the project's ``development``) or ``test``.

A clip's id is its video's file name without the extension (its audio's for an audio-only clip);
two lines giving the same id are refused. A line whose file is not in the corpus folder is skipped
and listed in the manifest's skipped.csv (and the report).

Split rule: with a ``split`` column, the splits as given: one partition, refused when a speaker
is in two splits. Without one, speaker-independent by the ``speaker`` column: partition 1-5 of
corpora.partitions.speaker_partition over the file's speakers (no sexes, so not balanced by sex).
Either way every class needs a clip in each of train, development and test.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from corpora.folder import has_audio_track
from corpora.manifest import SPLITS, ClipRecord, Corpus, CorpusError, SkippedFile
from corpora.partitions import PartitionError, speaker_partition

CORPUS_NAME = "labelled corpus"
LABELS_FILE = "labels.csv"
COLUMNS = ("video", "audio", "label", "speaker")
SPLIT_COLUMN = "split"
SPLIT_NAMES = {"train": "train", "dev": "development", "development": "development", "test": "test"}
LABEL_RULES = ("given",)
DEFAULT_LABEL_RULE = "given"
HEADER = ",".join((*COLUMNS, SPLIT_COLUMN))
OTHER_DELIMITERS = (";", "\t", "|")


@dataclass(frozen=True)
class LabelledLine:
    line: int
    clip: ClipRecord


def read_corpus(root: Path, label_rule: str = DEFAULT_LABEL_RULE, ratings: str = "",
                labels: Path | None = None) -> Corpus:
    """Every clip the labels file names with its label (and its split when the file gives one)."""
    if label_rule not in LABEL_RULES:
        raise CorpusError(f"a labelled corpus takes its labels from the labels file: --label-rule {label_rule!r} "
                          "does not apply; leave it out")
    if ratings:
        raise CorpusError(f"a labelled corpus has no ratings: --ratings {ratings!r} does not apply; leave it out")
    path = labels if labels is not None else root / LABELS_FILE
    if not path.is_file():
        raise CorpusError(f"{path}: labels file not found; write one ({HEADER}, see README \"Your own corpus\") "
                          "or give it with --labels")
    rows, has_split = _read_rows(path)
    lines, skipped = _clips(root, path, rows)
    if not lines:
        raise CorpusError(f"{path}: none of its clips' files is in {root}; are the paths relative to --corpus-dir?")
    if has_split:
        _check_given_splits(path, lines)
    clips = [entry.clip for entry in lines]
    classes = tuple(sorted({clip.label for clip in clips}))
    return Corpus(CORPUS_NAME, root, classes, label_rule, "", clips, skipped)


def partition(clips: list[ClipRecord], index: int) -> dict[str, str]:
    """Speaker -> split: the labels file's own splits, else partition ``index`` (the module's split rule)."""
    given = {clip.speaker: clip.split for clip in clips if clip.split}
    if given:
        if index != 1:
            raise PartitionError(f"the labels file gives the splits (its split column), so there is one partition; "
                                 f"use --partition 1, not {index}")
        return given
    splits = speaker_partition(dict.fromkeys(sorted({clip.speaker for clip in clips}), ""), index)
    missing = _class_gaps(clips, splits)
    if missing:
        label, split = missing[0]
        raise PartitionError(f"partition {index} puts no clip of class {label!r} in {split}: its clips come from too "
                             "few speakers; add clips of it from more speakers to the labels file, drop the class, "
                             "or give the splits in a split column")
    return splits


def _read_rows(path: Path) -> tuple[list[tuple[int, dict[str, str]]], bool]:
    """(line number, row) of every line after the header, and whether there is a split column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path}: not UTF-8 text (byte {error.start} cannot be read); save it as UTF-8 "
                          "(e.g. a spreadsheet's \"CSV UTF-8\")") from None
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or ()]
    if len(header) == 1 and any(mark in header[0] for mark in OTHER_DELIMITERS):
        raise CorpusError(f"{path} line 1: the header {header[0]!r} is one column: the file is not comma-separated; "
                          f"save it with commas between the columns ({HEADER})")
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise CorpusError(f"{path} line 1: no column {', '.join(missing)}; the header must name {', '.join(COLUMNS)} "
                          f"and optionally {SPLIT_COLUMN} ({HEADER})")
    reader.fieldnames = header
    rows = []
    for row in reader:
        line = reader.line_num  # blank lines, which the reader passes over, still count
        if None in row or None in row.values():
            raise CorpusError(f"{path} line {line}: {len([v for v in row.values() if v is not None])} fields where "
                              f"the header has {len(header)}; give one value per column (an empty one as ,,)")
        rows.append((line, {name: value.strip() for name, value in row.items()}))
    return rows, SPLIT_COLUMN in header


def _clips(root: Path, path: Path, rows: list[tuple[int, dict[str, str]]]) -> tuple[list[LabelledLine],
                                                                                   list[SkippedFile]]:
    lines: dict[str, LabelledLine] = {}
    skipped = []
    for line, row in rows:
        _check_row(path, line, row)
        absent = [row[kind] for kind in ("video", "audio") if row[kind] and not (root / row[kind]).is_file()]
        if absent:
            skipped.append(SkippedFile(absent[0], f"named on {path} line {line}, not in the corpus folder"))
            continue
        clip_id = Path(row["video"] or row["audio"]).stem
        if clip_id in lines:
            raise CorpusError(f"{path} lines {lines[clip_id].line} and {line}: both give clip {clip_id!r} (the file "
                              "name without its extension); rename one of the files or drop one line")
        lines[clip_id] = LabelledLine(line, _clip_record(root, clip_id, row))
    return list(lines.values()), skipped


def _check_row(path: Path, line: int, row: dict[str, str]) -> None:
    if not row["video"] and not row["audio"]:
        raise CorpusError(f"{path} line {line}: neither video nor audio is given; name the clip's file(s) or drop "
                          "the line")
    for name in ("label", "speaker"):
        if not row[name]:
            raise CorpusError(f"{path} line {line}: no {name}; every clip needs a label and a speaker")
    if SPLIT_COLUMN in row and row[SPLIT_COLUMN].lower() not in SPLIT_NAMES:
        raise CorpusError(f"{path} line {line}: split {row[SPLIT_COLUMN]!r} is not train, dev or test; give one "
                          "of them on every line, or drop the split column for generated partitions")


def _clip_record(root: Path, clip_id: str, row: dict[str, str]) -> ClipRecord:
    audio = row["audio"]
    if not audio and has_audio_track(root / row["video"]):
        audio = row["video"]
    split = SPLIT_NAMES[row[SPLIT_COLUMN].lower()] if SPLIT_COLUMN in row else ""
    return ClipRecord(clip_id=clip_id, audio_path=audio, video_path=row["video"], speaker=row["speaker"],
                      label=row["label"], intended=row["label"], split=split)


def _check_given_splits(path: Path, lines: list[LabelledLine]) -> None:
    first: dict[str, LabelledLine] = {}
    for entry in lines:
        earlier = first.setdefault(entry.clip.speaker, entry)
        if earlier.clip.split != entry.clip.split:
            raise CorpusError(f"{path} lines {earlier.line} and {entry.line}: speaker {entry.clip.speaker!r} is in "
                              f"both {earlier.clip.split} and {entry.clip.split}; keep each speaker in one split "
                              "(speaker-independent evaluation)")
    gaps = _class_gaps([entry.clip for entry in lines], {e.clip.speaker: e.clip.split for e in lines})
    if gaps:
        label, split = gaps[0]
        raise CorpusError(f"{path}: no clip of class {label!r} in the {split} split; give it clips in every split "
                          f"({', '.join(SPLITS)}), or drop the class")


def _class_gaps(clips: list[ClipRecord], splits: dict[str, str]) -> list[tuple[str, str]]:
    """(class, split) for every split that gets no clip of a class."""
    counts = Counter((clip.label, splits[clip.speaker]) for clip in clips)
    return [(label, split) for label in sorted({c.label for c in clips}) for split in SPLITS
            if not counts[(label, split)]]
