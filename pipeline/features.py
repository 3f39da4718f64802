"""Stage: extract features from a corpus's raw clips into HDF5 shards (``make features``).

Reads the corpus folder's clips and media (through its reader, corpora.registry; no labels or
partition are needed). Writes data/features/<dataset>/<feature-config>/, a folder named from the
extraction options: shards (extract.shards), index.csv, extraction.yaml (extract.spec: the
options, the sha256 of every model file used, package versions) and failures-<part>.csv (clips
that yielded nothing, and why). A clip whose file is a link that leads out of the corpus folder
is listed there too, not read, unless --follow-links (as make predict does).

With --video-features-from DIR --video-rate R the video features are imported from per-frame
arrays computed elsewhere instead (extract.imported), and only the audio is encoded.

Work is split across machines or GPUs by --num-shards K --shard-index i, or by torchrun's
RANK / WORLD_SIZE or a SLURM array's SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT when set
(extract.engine). A rerun skips clips already in complete shards; FORCE=1 (--force) redoes this
part's clips.
"""
from __future__ import annotations

import sys

from common.cli import run_stage
from extract.engine import SKIPPED_FILE, FeaturesConfig, extract

SHOWN = 10


def features(config: FeaturesConfig) -> int:
    folder, report = extract(config)
    print(f"features: {report.summary()}")
    for clip_id, reason in report.failures[:SHOWN]:
        print(f"features: failed {clip_id}: {reason}", file=sys.stderr)
    for clip_id, note in report.length_mismatches[:SHOWN]:
        print(f"features: kept {clip_id}, but {note}", file=sys.stderr)
    if report.failures or report.length_mismatches:
        print(f"features: every failed or cut-short clip is listed in {folder}/failures-*.csv", file=sys.stderr)
    if report.skipped_files:
        print(f"features: {report.skipped_files} files of the corpus are no clip and were skipped; the list, with "
              f"why: {folder / SKIPPED_FILE}", file=sys.stderr)
    print(f"features: written to {folder}; next: make verify-features, then make train")
    if report.clips == 0 and report.skipped == 0:
        return 1
    partial = report.failures or report.audio_missing or report.video_missing or report.length_mismatches
    return 1 if config.strict and partial else 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("features", FeaturesConfig, features, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
