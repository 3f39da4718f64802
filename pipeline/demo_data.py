"""Stage: write the built-in demo corpus, a miniature CREMA-D (``make demo-data``).

Reads nothing; writes data/raw/demo/ (or --out-dir) in CREMA-D's layout and formats. A rerun with
the same config does nothing; an interrupted run resumes where it stopped; --force starts over.
"""
from __future__ import annotations

import sys

from common.cli import run_stage
from corpora.demo.generate import DemoConfig, generate


def demo_data(config: DemoConfig) -> int:
    report = generate(config)
    if report.skipped:
        print(f"demo-data: {config.out_dir} is complete ({report.clips} clips); --force (FORCE=1) regenerates it")
        return 0
    print(f"demo-data: {report.clips} clips in {config.out_dir} ({report.written} written now, "
          f"{report.audio_seconds / 60:.1f} min of media) in {report.elapsed_seconds:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("demo-data", DemoConfig, demo_data, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
