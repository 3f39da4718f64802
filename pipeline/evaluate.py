"""Stage: score a trained run on its test split (``make eval``).

Reads the run folder written by ``make train`` (runs/<dataset>/<split>/<model>/ by default; see
pipeline.train): its config.yaml names the manifest and the feature folder it was trained on,
and its best.pt holds the kept weights. Scores the test split under three conditions (both
modalities, audio only, video only) for each head (see model.evaluation), and writes, in the
run folder: metrics.json (every score, and what was evaluated), report.md (the tables, the
per-class scores and the comparison of the two ways to average the heads) and confusion.png.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from corpora.manifest import CorpusError, load_manifest
from extract.shards import FeatureStore
from model.auxformer import AuxFormer
from model.data import FeatureMismatch
from model.evaluation import PREDICTING_HEAD, evaluate_model, plot_confusions, results_table
from model.training import BEST_CHECKPOINT, LOG_FILE, RunLog, TrainingError, load_checkpoint, resolve_device
from pipeline.config import option, parse_config, to_yaml
from pipeline.train import RUN_CONFIG_FILE, TrainStageConfig, split_data

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
CONFUSION_FILE = "confusion.png"
EVALUATED_SPLIT = "test"


@dataclass
class RunSelection:
    """Which training run a stage reads: the options make train was given, or the folder itself."""

    dataset: str = option("demo", "corpus the run was trained on")
    partition: int = option(1, "partition the run was trained on, 1-5")
    model: str = option("auxformer", "variant the run trained")
    label_rule: str = option("", "label rule of the run; '' for the dataset's default")
    partition_file: str = option("", "partition file of the run, if it was trained on one")
    runs_root: Path = option(Path("runs"), "where make train put the run")
    run_dir: str = option("", "the run folder itself, instead of the six options above")

    def folder(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        return TrainStageConfig(dataset=self.dataset, partition=self.partition, model=self.model,
                                label_rule=self.label_rule, partition_file=self.partition_file,
                                runs_root=self.runs_root).run_dir()


@dataclass
class EvalConfig(RunSelection):
    batch_size: int = option(32, "clips per batch")
    device: str = option("auto", "auto (cuda when available), cpu or cuda")


def load_run(run_dir: Path) -> tuple[dict, dict]:
    """The run's config.yaml and its best checkpoint; TrainingError when the run is not there."""
    config_path, checkpoint_path = run_dir / RUN_CONFIG_FILE, run_dir / BEST_CHECKPOINT
    if not config_path.is_file() or not checkpoint_path.is_file():
        raise TrainingError(f"{run_dir} holds no trained run ({RUN_CONFIG_FILE} and {BEST_CHECKPOINT}); "
                            "train it first with make train (same DATASET, PARTITION and MODEL)")
    return yaml.safe_load(config_path.read_text()), load_checkpoint(checkpoint_path)


def head_comparison(results: dict) -> list[dict]:
    """Per condition: macro-F1 of the reference's average of all heads and of the present heads' average."""
    return [{"condition": condition, "average": by_head["average"]["f1_macro"],
             "present_average": by_head["present_average"]["f1_macro"]}
            for condition, by_head in results.items() if "present_average" in by_head]


def write_report(metrics: dict, path: Path) -> None:
    results, classes = metrics["results"], metrics["classes"]
    lines = [f"# Evaluation of {metrics['model']} on {metrics['dataset']}, {metrics['split']} split",
             "", f"Run `{metrics['run_dir']}`, kept epoch {metrics['checkpoint_epoch']}; "
             f"{metrics['clips']} clips ({metrics['missing_clips']} of the split had no features).",
             f"Written {metrics['written']} by `python -m pipeline.evaluate`.", ""]
    for metric in ("f1_macro", "f1_micro", "precision_macro", "recall_macro", "accuracy"):
        lines += [f"## {metric}", "", results_table(results, metric), ""]
    comparison = head_comparison(results)
    if comparison:
        lines += ["## Averaging the heads", "",
                  "Macro-F1 of the reference's prediction (the average of all three heads' logits) against "
                  "the average of only the heads whose modality is present.", "",
                  "| condition | all three heads | present heads |", "|---|---:|---:|"]
        lines += [f"| {row['condition']} | {row['average']:.3f} | {row['present_average']:.3f} |" for row in comparison]
        lines.append("")
    head = metrics["predicting_head"]
    lines += [f"## Per class ({head} head)", "", "| condition | class | precision | recall | F1 | clips |",
              "|---|---|---:|---:|---:|---:|"]
    for condition, by_head in results.items():
        for name in classes:
            row = by_head[head]["per_class"][name]
            lines.append(f"| {condition} | {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} "
                         f"| {row['support']} |")
    lines += ["", f"Confusion matrices: {CONFUSION_FILE}.", ""]
    path.write_text("\n".join(lines))


def run(config: EvalConfig) -> tuple[Path, dict]:
    run_dir = config.folder()
    record, checkpoint = load_run(run_dir)
    data_record = record["data"]
    variant = record["stage"]["model"]
    classes = tuple(data_record["classes"])
    manifest = load_manifest(Path(data_record["manifest"]))
    features = Path(data_record["features"])
    if not features.is_dir():
        raise FeatureMismatch(f"{features}, the features {run_dir} was trained on, is gone; "
                              f"run make features DATASET={data_record['dataset']} with the same options")
    device = resolve_device(config.device)
    model = AuxFormer.from_checkpoint(checkpoint).to(device)
    store = FeatureStore(features)
    try:
        data = split_data(store, manifest, EVALUATED_SPLIT, RunLog(run_dir / LOG_FILE))
        results = evaluate_model(model, data, variant, classes, config.batch_size, device)
    finally:
        store.close()
    metrics = {"dataset": data_record["dataset"], "model": variant, "split": EVALUATED_SPLIT,
               "run_dir": str(run_dir), "checkpoint_epoch": checkpoint["epoch"], "classes": list(classes),
               "clips": len(data), "missing_clips": len(data.missing), "predicting_head": PREDICTING_HEAD[variant],
               "written": time.strftime("%Y-%m-%d %H:%M:%S"), "eval_config": yaml.safe_load(to_yaml(config)),
               "results": results, "head_comparison": head_comparison(results)}
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    write_report(metrics, run_dir / REPORT_FILE)
    plot_confusions(results, metrics["predicting_head"], classes, run_dir / CONFUSION_FILE,
                    f"{variant} on {data_record['dataset']} {EVALUATED_SPLIT} ({metrics['predicting_head']} head)")
    return run_dir, metrics


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(EvalConfig, argv, description=__doc__)
        run_dir, metrics = run(config)
    except (CorpusError, FeatureMismatch, TrainingError) as error:
        print(f"eval: {error}", file=sys.stderr)
        return 2
    print(f"{metrics['model']} on {metrics['dataset']} {metrics['split']} ({metrics['clips']} clips), macro-F1:")
    print(results_table(metrics["results"]))
    print(f"eval: {run_dir / METRICS_FILE}, {run_dir / REPORT_FILE}, {run_dir / CONFUSION_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
