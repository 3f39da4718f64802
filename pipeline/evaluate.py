"""Stage: score a trained run on its test split (``make eval``).

Reads the run folder written by ``make train`` (runs/<dataset>/<split>/<model>/ by default, or
--run-dir): its config.yaml names the manifest and the extraction it was trained on, and its
best.pt holds the kept weights. Scores the test split under three conditions (both
modalities, audio only, video only) for each head, and writes, in the run folder: metrics.json
(every score, and what was evaluated), report.md (the tables, the per-class scores and the
comparison of the two ways to average the heads) and confusion.png (inference.evaluation).
An extraction that lacks more of the test split than training allows of its splits is refused;
--allow-missing scores the clips it has, and the table and report say the split is partial.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from common.cli import run_stage
from common.config import check_within, config_values, option
from common.errors import ProjectError
from inference.evaluation import evaluate_run, partial_note
from model.data import MAX_MISSING_SHARE
from model.evaluation import results_table
from training.config import MAX_BATCH_SIZE
from training.run_folder import CONFUSION_FILE, EVAL_METRICS_FILE, EVAL_REPORT_FILE, RunFolder, RunSelection


@dataclass
class EvalConfig(RunSelection):
    batch_size: int = option(32, "clips per batch")
    device: str = option("auto", "auto (cuda when available), cpu or cuda")
    allow_missing: bool = option(False, f"score the clips the extraction has even when it lacks more than "
                                        f"{MAX_MISSING_SHARE:.0%} of the test split (the table and report say so)")

    def __post_init__(self) -> None:
        check_within("batch_size", self.batch_size, 1, MAX_BATCH_SIZE, ProjectError)


def evaluate(config: EvalConfig) -> int:
    run = RunFolder(config.folder())
    metrics = evaluate_run(run, config.batch_size, config.device, config_values(config), config.allow_missing)
    if partial_note(metrics):
        print(f"eval: {partial_note(metrics)}")
    print(f"{metrics['model']} on {metrics['dataset']} {metrics['split']} ({metrics['clips']} clips), macro-F1:")
    print(results_table(metrics["results"]))
    print(f"eval: {run / EVAL_METRICS_FILE}, {run / EVAL_REPORT_FILE}, {run / CONFUSION_FILE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("eval", EvalConfig, evaluate, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
