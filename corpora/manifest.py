"""The manifest: the one index of a corpus that every later stage reads.

A manifest folder (``data/manifests/<dataset>/<selection>/``) holds:

``manifest.csv``
    One row per clip, the columns of ``COLUMNS`` in that order:

    ============  =================================================================================
    clip_id       the corpus's own clip name (CREMA-D ``1001_IEO_ANG_HI``, MSP-IMPROV
                  ``MSP-IMPROV-S01A-F01-P-FM01``, a plain folder: the path below it, no extension)
    audio_path    file the audio is read from, relative to the corpus root: a WAV, or the video
                  itself when its audio track is to be used; empty when the clip has no audio
    video_path    the video, relative to the corpus root; empty when the clip has no video
    speaker       speaker id (CREMA-D actor ``1001``, MSP-IMPROV ``F01``); empty when unknown
    sex           ``Male``, ``Female`` or empty when unknown
    label         class name under the label rule; empty when the rule gives none
    soft_label    class probabilities in the manifest's class order, ``;``-joined; empty when
                  the rule has none (the ``intended`` rule, unlabelled recordings)
    split         ``train``, ``development``, ``test``, or empty: excluded, or a recording to
                  predict on
    excluded      why a clip is in no split (e.g. ``tie``, ``no majority``); empty otherwise
    intended      the emotion the speaker was asked to portray (from the file name; a labelled
                  corpus's own label)
    extra         the corpus's own fields, as a JSON object of strings: CREMA-D ``sentence`` and
                  ``level``, MSP-IMPROV ``sentence``, ``session`` and ``scenario``, RAVDESS
                  ``statement``, ``intensity`` and ``repetition``; ``{}`` where it has none
    ============  =================================================================================

The columns are the same for every corpus, so a reader with fields of its own adds them to
``extra`` rather than a column. A manifest written with other columns (before ``extra``, with one
column per corpus field) is refused by ``load_manifest`` and rebuilt by make manifest.

``manifest.yaml``
    The dataset, the corpus and its root, the class order, the label rule, the rating modality,
    the partition (index or file), the split rule, the config of the stage that wrote it, and a
    fingerprint of the corpus's files (names, sizes, modification times), so that a manifest
    of a corpus that has changed since is rebuilt.
    Written last, so a manifest folder without it is unfinished.

``skipped.csv``
    Files the reader could not use (a clip name that does not parse, a duplicate, ...), and why.

Media paths are stored relative to the corpus root and the root once in ``manifest.yaml``, so a
corpus moved elsewhere is reached by ``load_manifest(path, corpus_root=new_place)``. The root is
stored relative to the repository when the corpus lies inside it (``data/raw/demo``), otherwise
as given.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from common import files
from common.errors import ProjectError
from common.paths import resolve_recorded

COLUMNS = ("clip_id", "audio_path", "video_path", "speaker", "sex", "label", "soft_label", "split",
           "excluded", "intended", "extra")
SPLITS = ("train", "development", "test")
SEXES = ("Male", "Female")
MANIFEST_FILE = "manifest.csv"
META_FILE = "manifest.yaml"
SKIPPED_FILE = "skipped.csv"
REBUILD = "rebuild the manifest (make manifest FORCE=1)"
# Soft labels are rounded so that writing and reading a manifest gives back the same numbers.
SOFT_LABEL_DECIMALS = 6


class CorpusError(ProjectError):
    """Bad input that stops a stage; the message names the file and says what to do."""


@dataclass(frozen=True)
class ClipRecord:
    """One row of a manifest."""

    clip_id: str
    audio_path: str = ""
    video_path: str = ""
    speaker: str = ""
    sex: str = ""
    label: str = ""
    soft_label: tuple[float, ...] = ()
    split: str = ""
    excluded: str = ""
    intended: str = ""
    # Compared, never hashed: records are not kept in sets.
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class Corpus:
    """What a reader returns: every clip, labelled under one rule, not yet split."""

    name: str
    root: Path
    classes: tuple[str, ...]
    label_rule: str
    ratings: str
    clips: list[ClipRecord]
    skipped: list[SkippedFile]


@dataclass(frozen=True)
class ManifestMeta:
    dataset: str
    corpus: str
    corpus_root: str
    classes: tuple[str, ...]
    label_rule: str
    ratings: str
    partition: int  # 1-5, or 0 when none was generated (a partition file, or unlabelled data)
    partition_file: str
    split_rule: str
    config: dict = field(default_factory=dict)
    corpus_fingerprint: str = ""  # of the corpus's file list when the manifest was built (corpora.registry)


@dataclass(frozen=True)
class Manifest:
    meta: ManifestMeta
    clips: list[ClipRecord]
    root: Path  # the corpus root media paths are relative to

    def media(self, relative: str) -> Path | None:
        """Where a clip's ``audio_path`` or ``video_path`` is on this machine."""
        return self.root / relative if relative else None

    def in_split(self, split: str) -> list[ClipRecord]:
        return [clip for clip in self.clips if clip.split == split]


@dataclass(frozen=True)
class LabelDecision:
    label: str
    soft_label: tuple[float, ...]
    excluded: str


def label_from_votes(counts: Sequence[int], classes: Sequence[str], rule: str, other_votes: int = 0) -> LabelDecision:
    """Apply a perceived-label rule to one clip's votes (``counts`` in class order).

    ``other_votes`` are votes for none of the classes (MSP-IMPROV's "Other"): they count in the
    total a plurality or majority needs, not in the class probabilities.
    plurality: the class with the most votes; a tie, or "other" on top, gives no label.
    majority: a class with more than half of all votes, otherwise no label.
    distributional: the vote shares as a soft label, and the plurality class as the label when
    there is one; only a clip without any class vote is excluded.
    """
    class_votes = sum(counts)
    if class_votes == 0:
        return LabelDecision("", (), "no votes")
    soft = tuple(round(count / class_votes, SOFT_LABEL_DECIMALS) for count in counts)
    top = max(counts)
    unique_top = list(counts).count(top) == 1 and top > other_votes
    top_class = classes[list(counts).index(top)] if unique_top else ""
    if rule == "distributional":
        return LabelDecision(top_class, soft, "")
    if rule == "plurality":
        if top_class:
            return LabelDecision(top_class, soft, "")
        return LabelDecision("", soft, "other on top" if other_votes > top else "tie")
    if rule == "majority":
        if top > (class_votes + other_votes) / 2:
            return LabelDecision(classes[list(counts).index(top)], soft, "")
        return LabelDecision("", soft, "no majority")
    raise ValueError(f"label_from_votes does not apply the rule {rule!r}")


def _format_row(clip: ClipRecord) -> dict[str, str]:
    row = {name: getattr(clip, name) for name in COLUMNS}
    row["soft_label"] = ";".join(repr(p) for p in clip.soft_label)
    row["extra"] = json.dumps(clip.extra, ensure_ascii=False)
    return row


def speaker_in_two_splits(clips: list[ClipRecord]) -> tuple[ClipRecord, str] | None:
    """The first clip whose speaker is already in another split, with that split; None when each
    speaker keeps to one split (partitions are speaker-independent)."""
    split_of: dict[str, str] = {}
    for clip in clips:
        if not clip.split:
            continue
        first = split_of.setdefault(clip.speaker, clip.split)
        if first != clip.split:
            return clip, first
    return None


def _parse_row(row: dict[str, str], path: Path, line: int) -> ClipRecord:
    try:
        soft = tuple(float(p) for p in row["soft_label"].split(";")) if row["soft_label"] else ()
    except ValueError:
        raise CorpusError(f"{path} line {line}: soft_label {row['soft_label']!r} is not ';'-joined numbers; "
                          f"{REBUILD}") from None
    if row["split"] not in ("", *SPLITS):
        raise CorpusError(f"{path} line {line}: split {row['split']!r} is none of {', '.join(SPLITS)} (or empty); "
                          f"{REBUILD}")
    try:
        extra = json.loads(row["extra"])
    except json.JSONDecodeError:
        extra = None
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise CorpusError(f"{path} line {line}: extra {row['extra']!r} is not a JSON object of strings; {REBUILD}")
    values = {name: row[name] for name in COLUMNS if name not in ("soft_label", "extra")}
    return ClipRecord(soft_label=soft, extra=extra, **values)


def write_manifest(folder: Path, meta: ManifestMeta, clips: list[ClipRecord], skipped: list[SkippedFile]) -> None:
    """Write the three files; ``manifest.yaml`` last, as the mark of a finished manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).unlink(missing_ok=True)
    files.write_csv(folder / MANIFEST_FILE, COLUMNS, [_format_row(clip) for clip in clips])
    files.write_csv(folder / SKIPPED_FILE, ("path", "reason"), [asdict(s) for s in skipped])
    meta_values = asdict(meta)
    meta_values["classes"] = list(meta.classes)
    meta_values["columns"] = list(COLUMNS)
    files.write_text(folder / META_FILE, yaml.safe_dump(meta_values, sort_keys=False))


def load_meta(folder: Path) -> ManifestMeta:
    path = folder / META_FILE
    if not path.is_file():
        raise CorpusError(f"{path} not found: the manifest is missing or unfinished; build it with make manifest")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        values = None
    names = {f.name for f in fields(ManifestMeta)}
    if not isinstance(values, dict) or not names <= values.keys():
        raise CorpusError(f"{path}: not a manifest description (needs {', '.join(sorted(names))}); "
                          f"{REBUILD}")
    if values.get("columns") != list(COLUMNS):
        raise CorpusError(f"{path}: written with other columns than this code reads ({','.join(COLUMNS)}; an "
                          f"older manifest had a column per corpus field); {REBUILD}")
    values = {name: values[name] for name in names}
    values["classes"] = tuple(values["classes"])
    return ManifestMeta(**values)


def load_manifest(path: Path, corpus_root: Path | None = None) -> Manifest:
    """Read a manifest folder (or its manifest.csv); ``corpus_root`` overrides the stored root."""
    folder = path.parent if path.name == MANIFEST_FILE else path
    meta = load_meta(folder)
    csv_path = folder / MANIFEST_FILE
    clips = _read_clips(csv_path)
    root = corpus_root if corpus_root is not None else resolve_recorded(meta.corpus_root)
    return Manifest(meta, clips, root)


def _read_clips(csv_path: Path) -> list[ClipRecord]:
    try:
        with csv_path.open(newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise CorpusError(f"{csv_path}: columns are not {','.join(COLUMNS)}; {REBUILD}")
            clips = [_parse_row(row, csv_path, line) for line, row in enumerate(reader, start=2)]
    except UnicodeDecodeError:
        raise CorpusError(f"{csv_path}: not UTF-8 text; {REBUILD}") from None
    except csv.Error as error:
        raise CorpusError(f"{csv_path}: not a manifest ({error}); {REBUILD}") from None
    mixed = speaker_in_two_splits(clips)
    if mixed:
        clip, first = mixed
        line = clips.index(clip) + 2
        raise CorpusError(f"{csv_path} line {line}: speaker {clip.speaker} is also in {first}, and here in "
                          f"{clip.split} (clip {clip.clip_id}): partitions keep each speaker in one split; {REBUILD}")
    return clips


def load_skipped(folder: Path) -> list[SkippedFile]:
    with (folder / SKIPPED_FILE).open(newline="") as stream:
        return [SkippedFile(row["path"], row["reason"]) for row in csv.DictReader(stream)]
