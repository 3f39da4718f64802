"""Stage: cross-validation of one or more variants over partitions and seeds (``make crossval``).

Trains and scores every model x partition x seed as an ordinary run folder under
runs/<dataset>/crossval/<name>/runs/, then writes results.csv, report.md and crossval.png there
(experiments.crossval says what goes where, experiments.summary how the runs are summed up).
A rerun skips what is scored; a killed crossval resumes. On a SLURM array each task takes its
share of the runs, e.g. ``sbatch --array=0-29 --cpus-per-task=4 --wrap "make crossval ..."``.
"""
from __future__ import annotations

import sys

from common.cli import run_stage
from experiments.crossval import CrossvalConfig, run_crossval
from experiments.summary import REPORT_FILE


def crossval(config: CrossvalConfig) -> int:
    outcome = run_crossval(config)
    for label, problem in outcome.failed.items():
        print(f"crossval: {label} failed:\n{problem.rstrip()}", file=sys.stderr)
    if outcome.summary_written:
        print(f"crossval: {outcome.runs} runs scored; summary in {outcome.folder / REPORT_FILE}")
    else:
        print(f"crossval: not every run is scored yet; the summary is written when they are (rerun the same "
              f"command{' after fixing what failed' if outcome.failed else ''})")
    return 1 if outcome.failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("crossval", CrossvalConfig, crossval, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
