"""Stage: measure how well each modality alone, and both together, separate the demo corpus's
emotions with a simple classifier on per-clip statistics (``make demo-check``).

Reads the corpus's AudioWAV/ and VideoFlash/ (the intended emotion comes from the file names);
writes separability.json, confusion.png and config.yaml to --out-dir (runs/demo/separability/).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_stage
from common.config import option, save_config
from corpora.demo.separability import cross_validate, extract_all, format_table, write_report
from extract.face_detection import MediaPipeFaceDetector


@dataclass
class SeparabilityConfig:
    corpus_dir: Path = option(Path("data/raw/demo"), "demo corpus folder")
    out_dir: Path = option(Path("runs/demo/separability"), "where the report is written")
    folds: int = option(5, "cross-validation folds, split by actor")
    workers: int = option(os.cpu_count() or 1, "parallel worker processes")


def demo_check(config: SeparabilityConfig) -> int:
    started = time.monotonic()
    features = extract_all(config.corpus_dir, config.workers, MediaPipeFaceDetector)
    results = cross_validate(features, config.folds)
    write_report(results, features, config.out_dir)
    save_config(config, config.out_dir / "config.yaml")
    print(format_table(results))
    print(f"demo-check: {len(features)} clips in {time.monotonic() - started:.0f} s; "
          f"report in {config.out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("demo-check", SeparabilityConfig, demo_check, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
