"""The datasets the project reads, and the manifests built from them.

``DATASETS`` names each corpus's reader, partition rule and defaults. ``build_manifest`` turns a
``ManifestConfig`` (dataset, label rule, ratings, partition) into a manifest folder
(corpora.manifest describes its files), reusing a current one. ``corpus_clips`` lists a corpus's
clips and media without labels or a partition: what feature extraction needs.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.config import config_values, option
from common.paths import record_path
from corpora import crema_d, folder, labelled, msp_improv, ravdess
from corpora.manifest import META_FILE, SPLITS, ClipRecord, Corpus, CorpusError, ManifestMeta, load_meta, write_manifest
from corpora.partitions import (
    apply_reference_partition,
    assign_splits,
    check_partition_index,
    check_speaker_independent,
    load_reference_partition,
    save_reference_partition,
)

PARTITION_CSV = "partition.csv"
FILE_RULE = "partition file"


@dataclass(frozen=True, kw_only=True)
class DatasetReader:
    read: Callable[..., Corpus]  # (corpus folder, label rule, ratings), and labels= where labels_file is set
    partition: Callable[[list[ClipRecord], int], dict[str, str]] | None
    default_dir: str
    default_rule: str
    unlabelled_rule: str  # the rule that reads no ratings: the clip list alone
    default_ratings: str
    split_rule: str
    missing_hint: str  # what to do when the corpus folder is not there
    labels_file: str = ""  # the labels file in the corpus folder, for a reader that takes one (--labels)
    label_sets: tuple[str, ...] = ()  # the class sets a reader offers (--label-set), its default first


DATASETS = {
    # The demo's faces and voices are generated from the intended emotion; its simulated votes are
    # there to exercise the perceived-label rules, which stay one option away.
    "demo": DatasetReader(read=crema_d.read_corpus, partition=crema_d.partition, default_dir="data/raw/demo",
                          default_rule="intended", unlabelled_rule="intended", default_ratings=crema_d.DEFAULT_RATINGS,
                          split_rule="by speaker, corpora.partitions.speaker_partition",
                          missing_hint="run make demo-data first, or give --corpus-dir"),
    "crema": DatasetReader(read=crema_d.read_corpus, partition=crema_d.partition, default_dir="data/raw/crema-d",
                           default_rule=crema_d.DEFAULT_LABEL_RULE, unlabelled_rule="intended",
                           default_ratings=crema_d.DEFAULT_RATINGS,
                           split_rule="by speaker, corpora.partitions.speaker_partition",
                           missing_hint="put CREMA-D there (AudioWAV/, VideoFlash/, processedResults/, "
                                        "VideoDemographics.csv) or give --corpus-dir"),
    "improv": DatasetReader(read=msp_improv.read_corpus, partition=msp_improv.partition,
                            default_dir="data/raw/msp-improv", default_rule=msp_improv.DEFAULT_LABEL_RULE,
                            unlabelled_rule="intended", default_ratings=msp_improv.RATINGS,
                            split_rule="by session, the sessions of the VAVL partitions (corpora.msp_improv)",
                            missing_hint="put MSP-IMPROV there (its session folders and Evaluation.txt) or give "
                                         "--corpus-dir"),
    "folder": DatasetReader(read=folder.read_corpus, partition=None, default_dir="", default_rule="none",
                            unlabelled_rule="none", default_ratings="", split_rule="none: recordings to predict on",
                            missing_hint="give the folder that holds the videos"),
    "ravdess": DatasetReader(read=ravdess.read_corpus, partition=ravdess.partition, default_dir="data/raw/ravdess",
                             default_rule="intended", unlabelled_rule="intended", default_ratings="",
                             split_rule="by actor, corpora.partitions.speaker_partition (corpora.ravdess)",
                             missing_hint="unpack RAVDESS's archives there (Actor_01/ ... Actor_24/) or give "
                                          "--corpus-dir", label_sets=tuple(ravdess.LABEL_SETS)),
    # The demo corpus in RAVDESS's layout (make demo-data ARGS="--layout ravdess"), apart from real RAVDESS.
    "demo-ravdess": DatasetReader(read=ravdess.read_corpus, partition=ravdess.partition,
                                  default_dir="data/raw/demo-ravdess", default_rule="intended",
                                  unlabelled_rule="intended", default_ratings="",
                                  split_rule="by actor, corpora.partitions.speaker_partition (corpora.ravdess)",
                                  missing_hint="run make demo-data ARGS=\"--layout ravdess\" first, or give "
                                               "--corpus-dir", label_sets=tuple(ravdess.LABEL_SETS)),
    "labelled": DatasetReader(read=labelled.read_corpus, partition=labelled.partition, default_dir="data/raw/labelled",
                              default_rule=labelled.DEFAULT_LABEL_RULE, unlabelled_rule=labelled.DEFAULT_LABEL_RULE,
                              default_ratings="", split_rule="by speaker: the labels file's split column, else "
                                                             "corpora.partitions.speaker_partition (corpora.labelled)",
                              missing_hint="give the folder that holds the clips and labels.csv (--corpus-dir), or "
                                           "put them there", labels_file=labelled.LABELS_FILE),
}
LABELLED_DATASETS = tuple(name for name, reader in DATASETS.items() if reader.partition is not None)


@dataclass
class ManifestConfig:
    dataset: str = option("demo", f"which corpus: {', '.join(DATASETS)}")
    corpus_dir: str = option("", "corpus folder; default data/raw/<demo, crema-d, msp-improv, ravdess, demo-ravdess, "
                                 "labelled> (required for folder)")
    labels: str = option("", "labelled: the labels CSV (video,audio,label,speaker[,split]); default "
                             "<corpus-dir>/labels.csv")
    label_rule: str = option("", "label rule; default majority for crema (the reference partitions' rule), "
                                 "intended for demo, consensus for improv, given for labelled")
    ratings: str = option("", "ratings the perceived labels use (demo, crema): audiovisual (default), voice or face")
    label_set: str = option("", "ravdess: the classes, all (its 8 emotions, default) or crema6 (the 6 CREMA-D "
                                "has, by CREMA-D's class names)")
    partition: int = option(1, "speaker-independent partition, 1-5")
    partition_file: str = option("", "take clips, labels and splits from this CSV in the reference format instead")
    manifests_dir: Path = option(Path("data/manifests"), "manifests go to <manifests-dir>/<dataset>/<selection>/")
    force: bool = option(False, "rebuild even when a manifest with this config exists")


def dataset_reader(dataset: str) -> DatasetReader:
    if dataset not in DATASETS:
        raise CorpusError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[dataset]


def corpus_folder(dataset: str, corpus_dir: str) -> Path:
    """The corpus folder of a dataset (``corpus_dir`` or its default); CorpusError when it is not there."""
    reader = dataset_reader(dataset)
    if not corpus_dir and not reader.default_dir:
        raise CorpusError(f"--corpus-dir is required for dataset {dataset} "
                          f"(e.g. make manifest DATASET={dataset} ARGS=\"--corpus-dir path/to/clips\")")
    path = Path(corpus_dir or reader.default_dir)
    if not path.is_dir():
        raise CorpusError(f"{path}: corpus folder not found; {reader.missing_hint}")
    return path


def labels_path(dataset: str, corpus_dir: Path, labels: str) -> Path | None:
    """The labels file a dataset reads (``labels``, or the one in its corpus folder); None for the corpora
    that carry their own labels, which refuse ``--labels``."""
    reader = dataset_reader(dataset)
    if not reader.labels_file:
        if labels:
            raise CorpusError(f"--labels {labels}: dataset {dataset} has labels of its own; --labels is for "
                              "DATASET=labelled, leave it out")
        return None
    return Path(labels) if labels else corpus_dir / reader.labels_file


def check_label_set(dataset: str, label_set: str) -> str:
    """The label set a dataset reads (``label_set``, or its default); '' for a dataset without label sets."""
    reader = dataset_reader(dataset)
    if label_set and label_set not in reader.label_sets:
        offered = f"choose one of {', '.join(reader.label_sets)}" if reader.label_sets else "leave it out"
        raise CorpusError(f"--label-set {label_set}: dataset {dataset} has no such label set; {offered}")
    return label_set or (reader.label_sets[0] if reader.label_sets else "")


def read_corpus(reader: DatasetReader, corpus_dir: Path, label_rule: str, ratings: str,
                labels: Path | None, label_set: str = "") -> Corpus:
    extra = {"labels": labels} if labels is not None else {}
    if label_set:
        extra["label_set"] = label_set
    return reader.read(corpus_dir, label_rule, ratings, **extra)


def corpus_clips(dataset: str, corpus_dir: str, labels: str = "") -> Corpus:
    """Every clip of the corpus with its media, read without ratings or a partition."""
    reader = dataset_reader(dataset)
    folder_path = corpus_folder(dataset, corpus_dir)
    return read_corpus(reader, folder_path, reader.unlabelled_rule, reader.default_ratings,
                       labels_path(dataset, folder_path, labels))


@dataclass(frozen=True)
class Selection:
    """What a config asks for, with the dataset's defaults filled in."""

    dataset: str
    reader: DatasetReader
    corpus_dir: Path
    label_rule: str
    ratings: str
    partition: int
    partition_file: Path | None
    labels: Path | None = None  # the labels file of a labelled corpus
    label_set: str = ""

    @property
    def name(self) -> str:
        """The manifest's folder below <out-dir>/<dataset>/."""
        if self.partition_file:
            return f"file-{self.partition_file.stem}"
        if self.reader.partition is None:
            return self.corpus_dir.resolve().name
        return "-".join(part for part in (self.label_rule, self.ratings, self._label_set_name(),
                                          f"p{self.partition}") if part)

    def _label_set_name(self) -> str:
        """The label set, when not the dataset's default."""
        return self.label_set if self.reader.label_sets and self.label_set != self.reader.label_sets[0] else ""

    @property
    def split_name(self) -> str:
        """The name of a run trained on this selection: p<k>, with a non-default rule or ratings appended."""
        if self.partition_file:
            return f"file-{self.partition_file.stem}"
        extras = [value for value, default in ((self.label_rule, self.reader.default_rule),
                                               (self.ratings, self.reader.default_ratings)) if value != default]
        return "-".join([f"p{self.partition}", *extras, *filter(None, [self._label_set_name()])])


def select(config: ManifestConfig, check_corpus: bool = True) -> Selection:
    """The selection a config names; ``check_corpus`` False skips looking for the corpus folder."""
    reader = dataset_reader(config.dataset)
    label_set = check_label_set(config.dataset, config.label_set)
    corpus_dir = (corpus_folder(config.dataset, config.corpus_dir) if check_corpus
                  else Path(config.corpus_dir or reader.default_dir))
    partition_file = Path(config.partition_file) if config.partition_file else None
    labels = labels_path(config.dataset, corpus_dir, config.labels)
    if partition_file and config.label_rule:
        raise CorpusError(f"--label-rule {config.label_rule} and --partition-file both given: "
                          "a partition file brings its own labels; drop --label-rule")
    if partition_file and reader.partition is None:
        raise CorpusError(f"dataset {config.dataset} has no labels, so no partition file applies; "
                          "drop --partition-file")
    if reader.partition is not None and not partition_file:
        check_partition_index(config.partition)
    if partition_file:
        return Selection(config.dataset, reader, corpus_dir, FILE_RULE, reader.default_ratings, 0, partition_file,
                         labels, label_set)
    return Selection(config.dataset, reader, corpus_dir, config.label_rule or reader.default_rule,
                     config.ratings or reader.default_ratings,
                     config.partition if reader.partition else 0, None, labels, label_set)


def _recorded_config(config: ManifestConfig) -> dict:
    values = config_values(config)
    values.pop("force")
    return values


def corpus_fingerprint(root: Path, labels: Path | None = None) -> str:
    """A digest of every file's path, size and modification time under ``root``, and of a labels file
    outside it: it changes when a clip is added, removed or rewritten, or relabelled."""
    entries = [_labels_entry(labels)] if labels is not None and not labels.resolve().is_relative_to(
        root.resolve()) else []
    for parent, _, names in os.walk(root):
        for name in names:
            path = Path(parent) / name
            stat = path.stat()
            entries.append(f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16]


def _labels_entry(labels: Path) -> str:
    stat = labels.stat()
    return f"labels\t{labels.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}"


def is_current(folder_path: Path, config: ManifestConfig, fingerprint: str) -> bool:
    """A finished manifest made with this config from the corpus as it is now is there."""
    if not (folder_path / META_FILE).is_file():
        return False
    try:
        meta = load_meta(folder_path)
    except CorpusError:
        return False
    return meta.config == _recorded_config(config) and meta.corpus_fingerprint == fingerprint


def _split_clips(corpus: Corpus, selection: Selection) -> list[ClipRecord]:
    if selection.partition_file:
        reference = load_reference_partition(selection.partition_file, corpus.classes)
        return apply_reference_partition(corpus.clips, reference, selection.partition_file)
    if selection.reader.partition is None:
        return corpus.clips
    clips = assign_splits(corpus.clips, selection.reader.partition(corpus.clips, selection.partition))
    check_speaker_independent(clips, f"partition {selection.partition}")
    return clips


def build_manifest(config: ManifestConfig) -> tuple[Path, bool]:
    """Write the manifest unless a current one exists; returns its folder and whether it was written."""
    selection = select(config)
    out = config.manifests_dir / selection.dataset / selection.name
    fingerprint = corpus_fingerprint(selection.corpus_dir, selection.labels)
    if is_current(out, config, fingerprint) and not config.force:
        return out, False
    rule = "intended" if selection.partition_file else selection.label_rule
    corpus = read_corpus(selection.reader, selection.corpus_dir, rule, selection.ratings, selection.labels,
                         selection.label_set)
    clips = _split_clips(corpus, selection)
    meta = ManifestMeta(
        dataset=selection.dataset, corpus=corpus.name, corpus_root=record_path(selection.corpus_dir),
        classes=corpus.classes, label_rule=selection.label_rule, ratings=corpus.ratings,
        partition=selection.partition,
        partition_file=record_path(selection.partition_file) if selection.partition_file else "",
        split_rule=selection.reader.split_rule, config=_recorded_config(config), corpus_fingerprint=fingerprint)
    # manifest.yaml marks a finished manifest, so it goes first and comes back last.
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)
    (out / PARTITION_CSV).unlink(missing_ok=True)
    if any(clip.split for clip in clips):
        save_reference_partition(out / PARTITION_CSV, clips, corpus.classes)
    write_manifest(out, meta, clips, corpus.skipped)
    return out, True


def summary(folder_path: Path, clips: list[ClipRecord]) -> str:
    splits = Counter(clip.split for clip in clips if clip.split)
    excluded = sum(1 for clip in clips if clip.excluded)
    in_splits = ", ".join(f"{splits[s]} {s}" for s in SPLITS)
    return f"{len(clips)} clips ({in_splits}; {excluded} excluded) in {folder_path}"
