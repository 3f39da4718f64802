"""Checking an extraction folder: what ``make verify-features`` reports, as one table of checks.

Rewrites index.csv from the shards, then checks: the model files recorded in extraction.yaml
against the ones this machine would use; every clip of the corpus there exactly once (a clip
added to the corpus since shows as missing) and none that the corpus lacks; every clip readable,
matching its checksum and finite; every array of the expected shape; audio and video lengths
that agree; the clips that failed; and whether the dataset's manifests still match the corpus.
The last three are warnings: they count as problems only with ``strict``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.paths import resolve_recorded
from corpora.manifest import META_FILE, CorpusError, load_meta
from corpora.registry import corpus_fingerprint
from extract.clip_media import LENGTH_TOLERANCE_SECONDS
from extract.engine import FeaturesConfig, load_jobs, read_failures
from extract.shards import ClipFeatures, FeatureError, FeatureStore, build_index, foreign_shards, shard_files
from extract.spec import ExtractionRecord, Extractor


@dataclass
class Check:
    name: str
    problems: list[str]
    warning: bool = False  # reported, but a problem only under --strict


def verify_checks(folder: Path, corpus_dir: str = "", manifests_dir: Path | None = None) -> list[Check]:
    record = ExtractionRecord.load(folder)
    models = Check("model files as pinned", [f"model files: {difference}" for difference
                                             in record.differences(Extractor(record.spec).record())])
    rows = build_index(folder)
    corpus = corpus_dir or str(resolve_recorded(record.corpus_dir))
    config = FeaturesConfig(spec=record.spec, dataset=record.dataset, corpus_dir=corpus)
    expected = {job.clip_id for job in load_jobs(config)}
    failed = read_failures(folder)
    counts = Counter(row["clip_id"] for row in rows)
    presence = Check("every corpus clip there once", [f"{clip}: in {n} shards" for clip, n in counts.items() if n > 1])
    presence.problems += [f"{clip}: missing" for clip in sorted(expected - set(counts) - set(failed))]
    presence.problems += [f"{clip}: not in the corpus" for clip in sorted(set(counts) - expected)]
    failures = Check("clips that yielded nothing", [f"{clip}: failed ({reason})"
                                                    for clip, reason in sorted(failed.items()) if clip not in counts],
                     warning=True)
    readable = Check("readable, checksums match, finite",
                     foreign_shards(folder, [path.name for path in shard_files(folder)], record.folder))
    shapes = Check("arrays of the expected shapes", [])
    lengths = Check("audio and video of one length", [], warning=True)
    audio_dim, audio_rate = int(record.models["audio_dim"]), float(record.models["audio_rate"])
    with FeatureStore(folder) as store:
        for clip_id in store.clip_ids():
            try:
                clip = store.load(clip_id)
            except FeatureError as error:
                readable.problems.append(str(error))
                continue
            shapes.problems += [f"{clip_id}: {p}" for p in shape_problems(clip, audio_dim,
                                                                          boxes=not record.spec.video_features_from)]
            lengths.problems += [f"{clip_id}: {p}" for p in length_problems(clip, audio_rate)]
    return [models, presence, readable, shapes, lengths, failures,
            _manifest_check(manifests_dir / record.dataset if manifests_dir else None, Path(corpus))]


def verify(folder: Path, strict: bool = False, corpus_dir: str = "") -> list[str]:
    """The problems found, one line each; empty when the folder is sound."""
    return [problem for check in verify_checks(folder, corpus_dir) if strict or not check.warning
            for problem in check.problems]


def shape_problems(clip: ClipFeatures, audio_dim: int, boxes: bool = True) -> list[str]:
    """What is wrong with a clip's arrays; ``boxes``: valid frames must have a face box (imported ones have none)."""
    problems = []
    if clip.has_audio and clip.audio.shape[1] != audio_dim:
        problems.append(f"audio features have {clip.audio.shape[1]} numbers a frame, expected {audio_dim}")
    frames = len(clip.valid)
    if not (len(clip.embedding) == len(clip.boxes) == len(clip.timestamps) == frames):
        problems.append("per-frame arrays of different lengths")
    if boxes and frames and not np.isfinite(clip.boxes[clip.valid]).all():
        problems.append("a valid frame without a box")
    if not clip.has_audio and not clip.has_video:
        problems.append("neither audio nor a face")
    return problems


def length_problems(clip: ClipFeatures, audio_rate: float) -> list[str]:
    if not clip.has_audio or not len(clip.valid):
        return []
    audio_seconds = (len(clip.audio) - 1) / audio_rate
    if abs(audio_seconds - clip.duration) <= LENGTH_TOLERANCE_SECONDS:
        return []
    return [f"audio lasts {audio_seconds:.2f} s but the video {clip.duration:.2f} s (one is cut short; check the "
            "media files)"]


def _manifest_check(dataset_manifests: Path | None, corpus: Path) -> Check:
    check = Check("manifests match the corpus", [], warning=True)
    if dataset_manifests is None or not dataset_manifests.is_dir():
        return check
    fingerprint = corpus_fingerprint(corpus)
    for folder in sorted(path.parent for path in dataset_manifests.glob(f"*/{META_FILE}")):
        try:
            meta = load_meta(folder)
        except CorpusError as error:
            check.problems.append(str(error))
            continue
        if resolve_recorded(meta.corpus_root).resolve() != corpus.resolve():
            continue  # a manifest of another copy of the corpus (--corpus-dir) is that copy's to match
        if meta.corpus_fingerprint != fingerprint:
            check.problems.append(f"{folder}: made from the corpus as it was before it changed; the next make "
                                  "manifest or make train rebuilds it")
    return check
