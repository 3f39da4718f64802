"""Stage: check an extraction folder (``make verify-features``); exit 1 on any problem.

Reads the folder's shards, extraction.yaml, failures-*.csv and the corpus manifest it was made
from. Rewrites index.csv from the shards, then checks that every manifest clip is there exactly
once (or listed as failed), that every array is finite and of the expected shape, and that the
audio and video frame counts agree with the clip's duration. Writes nothing else.
"""
from __future__ import annotations

import csv
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from corpora.manifest import CorpusError
from extract.shards import FeatureStore, build_index
from pipeline.config import option, parse_config
from pipeline.features import CONFIG_FILE, FeaturesConfig, load_jobs

from extract.clip_media import TRUNCATION_SECONDS as DURATION_TOLERANCE_S


@dataclass
class VerifyConfig:
    dataset: str = option("demo", "check the newest extraction of this dataset (when --features-dir is not given)")
    features_dir: str = option("", "extraction folder, data/features/<dataset>/<feature-config>")
    out_root: Path = option(Path("data/features"), "where extractions are")
    strict: bool = option(False, "count failed clips (listed in failures-*.csv) as problems too")

    def folder(self) -> Path:
        if self.features_dir:
            return Path(self.features_dir)
        candidates = sorted((self.out_root / self.dataset).glob(f"*/{CONFIG_FILE}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise CorpusError(f"no extraction under {self.out_root / self.dataset}: run make features DATASET={self.dataset}")
        return candidates[-1].parent


def verify(folder: Path, strict: bool = False) -> list[str]:
    """Problems found, one line each; empty when the folder is sound."""
    if not (folder / CONFIG_FILE).is_file():
        return [f"{folder}: no {CONFIG_FILE}; is this an extraction folder (data/features/<dataset>/<config>)?"]
    record = yaml.safe_load((folder / CONFIG_FILE).read_text())
    rows = build_index(folder)
    config = FeaturesConfig(**{k: v for k, v in record["config"].items() if k in FeaturesConfig.__dataclass_fields__})
    expected = {job.clip_id for job in load_jobs(config)}
    failed = _failed_clips(folder)
    counts = Counter(row["clip_id"] for row in rows)
    problems = [f"{clip}: in {n} shards" for clip, n in counts.items() if n > 1]
    problems += [f"{clip}: missing" for clip in sorted(expected - set(counts) - set(failed))]
    problems += [f"{clip}: not in the manifest" for clip in sorted(set(counts) - expected)]
    if strict:
        problems += [f"{clip}: failed ({reason})" for clip, reason in sorted(failed.items()) if clip not in counts]
    store = FeatureStore(folder)
    n_mels, dims = record["identity"]["mel"]["n_mels"], set()
    for clip_id in store.clip_ids():
        clip = store.load(clip_id)
        dims.add(clip.embedding.shape[1])
        problems += [f"{clip_id}: {p}" for p in _clip_problems(clip, n_mels, record["identity"]["mel"]["hop_ms"])]
    store.close()
    if len(dims) > 1:
        problems.append(f"embeddings of different sizes: {sorted(dims)}")
    return problems


def _clip_problems(clip, n_mels: int, hop_ms: float) -> list[str]:
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
        if abs(audio_seconds - clip.duration) > DURATION_TOLERANCE_S:
            problems.append(f"audio lasts {audio_seconds:.2f} s but the video {clip.duration:.2f} s")
    return problems


def _failed_clips(folder: Path) -> dict[str, str]:
    failed = {}
    for path in folder.glob("failures-*.csv"):
        with open(path, newline="") as f:
            failed.update({row["clip_id"]: row["reason"] for row in csv.DictReader(f)})
    return failed


def main(argv: list[str] | None = None) -> int:
    config = parse_config(VerifyConfig, argv, description=__doc__)
    try:
        folder = config.folder()
        problems = verify(folder, config.strict)
    except CorpusError as error:
        print(f"verify-features: {error}", file=sys.stderr)
        return 2
    for problem in problems[:50]:
        print(f"verify-features: {problem}", file=sys.stderr)
    if problems:
        print(f"verify-features: {len(problems)} problems in {folder}", file=sys.stderr)
        return 1
    print(f"verify-features: {folder} is complete and sound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
