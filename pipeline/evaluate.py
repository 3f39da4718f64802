"""Stage: score a trained run on its test split (``make eval``).

Reads the run folder written by ``make train`` (runs/<dataset>/<split>/<model>/ by default, or
--run-dir): its config.yaml names the manifest and the extraction it was trained on, and its
best.pt holds the kept weights. Scores the test split under three conditions (both
modalities, audio only, video only) for each head, and writes, in the run folder: metrics.json
(every score, and what was evaluated), report.md (the tables, the per-class scores and the
comparison of the two ways to average the heads) and confusion.png (inference.evaluation).
An extraction that lacks more of the test split than training allows of its splits is refused;
--allow-missing scores the clips it has, and the table and report say the split is partial.

Cross-corpus: --on-dataset D (with --on-split, and D's corpus options --on-corpus-dir, --on-labels,
--on-label-set, --on-partition) scores the run on D's clips instead, reading D's manifest (built
when missing) and D's features made with the run's feature options, and writes the same three
files in <run>/cross/<D>-<split>/ (inference.cross_corpus: classes matched by name).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_stage
from common.config import check_within, config_values, flag, option
from common.errors import ProjectError
from corpora.registry import ManifestConfig
from inference.cross_corpus import ON_SPLITS, cross_folder, evaluate_across, mapping_text
from inference.evaluation import evaluate_run, partial_note
from model.data import MAX_MISSING_SHARE
from model.evaluation import results_table
from training.config import MAX_BATCH_SIZE
from training.run_folder import CONFUSION_FILE, EVAL_METRICS_FILE, EVAL_REPORT_FILE, RunFolder, RunSelection

FEATURES_ROOT = Path("data/features")  # where make features puts its extractions
OTHER_DATASET_OPTIONS = ("on_corpus_dir", "on_labels", "on_label_set", "on_features_dir")


@dataclass
class EvalConfig(RunSelection):
    batch_size: int = option(32, "clips per batch")
    device: str = option("auto", "auto (cuda when available), cpu or cuda")
    allow_missing: bool = option(False, f"score the clips the extraction has even when it lacks more than "
                                        f"{MAX_MISSING_SHARE:.0%} of the test split (the table and report say so)")
    on_dataset: str = option("", "cross-corpus: score the run on this dataset's clips instead (e.g. ravdess)")
    on_split: str = option("test", f"cross-corpus: which of its splits: {', '.join(ON_SPLITS)}")
    on_corpus_dir: str = option("", "cross-corpus: its corpus folder, when not the dataset's default")
    on_labels: str = option("", "cross-corpus: its labels CSV (labelled)")
    on_label_set: str = option("", "cross-corpus: its label set (ravdess)")
    on_partition: int = option(1, "cross-corpus: its partition, 1-5 (what its splits are)")
    on_features_dir: str = option("", "cross-corpus: its extraction folder, when not data/features/<dataset>/ with "
                                      "the run's feature options")

    def __post_init__(self) -> None:
        check_within("batch_size", self.batch_size, 1, MAX_BATCH_SIZE, ProjectError)
        if self.on_split not in ON_SPLITS:
            raise ProjectError(f"--on-split must be one of {', '.join(ON_SPLITS)}, got {self.on_split!r}")
        given = [flag(name) for name in OTHER_DATASET_OPTIONS if getattr(self, name)]
        if given and not self.on_dataset:
            raise ProjectError(f"{', '.join(given)} name the corpus of a cross-corpus evaluation; give --on-dataset "
                               "too, or leave them out")


def evaluate(config: EvalConfig) -> int:
    if config.on_dataset:
        return evaluate_other(config)
    run = RunFolder(config.folder())
    metrics = evaluate_run(run, config.batch_size, config.device, config_values(config), config.allow_missing)
    if partial_note(metrics):
        print(f"eval: {partial_note(metrics)}")
    print(f"{metrics['model']} on {metrics['dataset']} {metrics['split']} ({metrics['clips']} clips), macro-F1:")
    print(results_table(metrics["results"]))
    print(f"eval: {run / EVAL_METRICS_FILE}, {run / EVAL_REPORT_FILE}, {run / CONFUSION_FILE}")
    return 0


def evaluate_other(config: EvalConfig) -> int:
    run = RunFolder(config.folder())
    target = ManifestConfig(dataset=config.on_dataset, corpus_dir=config.on_corpus_dir, labels=config.on_labels,
                            label_set=config.on_label_set, partition=config.on_partition)
    metrics = evaluate_across(run, target, config.on_split, config.on_features_dir, FEATURES_ROOT,
                              config.batch_size, config.device, config_values(config))
    for line in mapping_text(metrics):
        print(f"eval: {line}")
    print(f"{metrics['model']} trained on {metrics['trained_on']}, on {metrics['dataset']} {metrics['split']} "
          f"({metrics['clips']} clips), macro-F1:")
    print(results_table(metrics["results"]))
    out = cross_folder(run, config.on_dataset, config.on_split)
    print(f"eval: {out / EVAL_METRICS_FILE}, {out / EVAL_REPORT_FILE}, {out / CONFUSION_FILE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("eval", EvalConfig, evaluate, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
