"""Checking an extraction folder: what ``make verify-features`` reports.

Rewrites index.csv from the shards, then checks that every clip of the corpus is there exactly
once (or listed as failed), that no clip is there that the corpus lacks, that every array is
finite and of the expected shape, that audio and video lengths agree with the clip's duration,
and that the model files recorded in extraction.yaml are the ones this machine would use.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from common.paths import resolve_recorded
from extract.clip_media import TRUNCATION_SECONDS
from extract.engine import FeaturesConfig, load_jobs, read_failures
from extract.shards import ClipFeatures, FeatureStore, build_index
from extract.spec import ExtractionRecord, Extractor


def verify(folder: Path, strict: bool = False, corpus_dir: str = "") -> list[str]:
    """Problems found, one line each; empty when the folder is sound."""
    record = ExtractionRecord.load(folder)
    problems = [f"model files: {difference}"
                for difference in record.differences(Extractor(record.spec).record())]
    rows = build_index(folder)
    config = FeaturesConfig(**vars(record.spec), dataset=record.dataset,
                            corpus_dir=corpus_dir or str(resolve_recorded(record.corpus_dir)))
    expected = {job.clip_id for job in load_jobs(config)}
    failed = read_failures(folder)
    counts = Counter(row["clip_id"] for row in rows)
    problems += [f"{clip}: in {n} shards" for clip, n in counts.items() if n > 1]
    problems += [f"{clip}: missing" for clip in sorted(expected - set(counts) - set(failed))]
    problems += [f"{clip}: not in the corpus" for clip in sorted(set(counts) - expected)]
    if strict:
        problems += [f"{clip}: failed ({reason})" for clip, reason in sorted(failed.items()) if clip not in counts]
    dims = set()
    with FeatureStore(folder) as store:
        for clip_id in store.clip_ids():
            clip = store.load(clip_id)
            dims.add(clip.embedding.shape[1])
            problems += [f"{clip_id}: {p}" for p in clip_problems(clip, record.spec.n_mels, record.spec.hop_ms)]
    if len(dims) > 1:
        problems.append(f"embeddings of different sizes: {sorted(dims)}")
    return problems


def clip_problems(clip: ClipFeatures, n_mels: int, hop_ms: float) -> list[str]:
    problems = []
    if clip.has_audio and clip.mel.shape[1] != n_mels:
        problems.append(f"log-mel has {clip.mel.shape[1]} bands, expected {n_mels}")
    frames = len(clip.valid)
    if not (len(clip.embedding) == len(clip.boxes) == len(clip.timestamps) == frames):
        problems.append("per-frame arrays of different lengths")
    if not np.isfinite(clip.mel).all() or not np.isfinite(clip.embedding).all():
        problems.append("non-finite values")
    if frames and not np.isfinite(clip.boxes[clip.valid]).all():
        problems.append("a valid frame without a box")
    if not clip.has_audio and not clip.has_video:
        problems.append("neither audio nor a face")
    if clip.has_audio and frames and not clip.video_note:
        audio_seconds = (len(clip.mel) - 1) * hop_ms / 1000
        if abs(audio_seconds - clip.duration) > TRUNCATION_SECONDS:
            problems.append(f"audio lasts {audio_seconds:.2f} s but the video {clip.duration:.2f} s")
    return problems
