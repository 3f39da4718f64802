"""Stage: write the built-in demo corpus, a miniature CREMA-D (``make demo-data``).

Reads nothing; writes data/raw/demo/ (or --out-dir) in CREMA-D's layout and formats. A rerun with
the same config does nothing; an interrupted run resumes where it stopped; --force starts over.
"""
from __future__ import annotations

import sys

from corpora.demo.generate import DemoConfig, generate
from pipeline.config import parse_config


def main(argv: list[str] | None = None) -> int:
    config = parse_config(DemoConfig, argv, description=__doc__)
    try:
        report = generate(config)
    except (ValueError, FileExistsError) as error:
        print(f"demo-data: {error}", file=sys.stderr)
        return 2
    if report.skipped:
        print(f"demo-data: {config.out_dir} is complete ({report.clips} clips); --force (FORCE=1) regenerates it")
        return 0
    print(f"demo-data: {report.clips} clips in {config.out_dir} ({report.written} written now, "
          f"{report.audio_seconds / 60:.1f} min of media) in {report.elapsed_seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
