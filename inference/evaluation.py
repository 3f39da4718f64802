"""Scoring a trained run on its recorded test split: metrics.json, report.md and confusion.png.

The run folder's config.yaml names the manifest and the extraction it was trained on (read by the
project's path rule, common.paths); best.pt holds the kept weights. The test split is scored
under the variant's conditions and heads (model.evaluation), in float32. An extraction that lacks
more of the test split than training allows of its splits (model.data.is_incomplete) is refused,
unless ``allow_missing``: then the clips it has are scored, and the printed table and report.md
say the split is partial.
"""
from __future__ import annotations

import json
import time

from common import files
from common.device import resolve_device
from common.paths import resolve_recorded
from corpora.manifest import load_manifest
from extract.engine import read_failures
from extract.shards import FeatureStore
from extract.spec import ExtractionRecord
from model.auxformer import AuxFormer
from model.data import ClipDataset, FeatureMismatch, is_incomplete, split_dataset, unlisted_missing
from model.evaluation import evaluate_model, plot_confusions, results_table
from model.variants import VARIANTS
from training.run_folder import BEST_CHECKPOINT, CONFUSION_FILE, EVAL_METRICS_FILE, EVAL_REPORT_FILE, RunFolder

EVALUATED_SPLIT = "test"


def evaluate_run(run: RunFolder, batch_size: int, device_name: str, config_values: dict,
                 allow_missing: bool = False) -> dict:
    """Score the run's test split, write metrics.json, report.md and confusion.png; returns the metrics."""
    record = run.record()
    checkpoint = run.load_checkpoint(BEST_CHECKPOINT)
    variant = VARIANTS[record.variant]
    if not record.data.get("manifest") or not record.data.get("features"):
        raise FeatureMismatch(f"{run / 'config.yaml'} records no manifest or features to evaluate on (a converted "
                              "checkpoint?); give them when converting (--manifest, --features-dir)")
    manifest = load_manifest(resolve_recorded(record.data["manifest"]))
    features = resolve_recorded(record.data["features"])
    if not features.is_dir():
        raise FeatureMismatch(f"{features}, the features {run} was trained on, is gone; "
                              f"run make features DATASET={record.data['dataset']} with the same options")
    device = resolve_device(device_name)
    model = AuxFormer.from_checkpoint(checkpoint).to(device)
    with FeatureStore(features, ExtractionRecord.load(features).folder) as store:
        data = split_dataset(store, manifest, EVALUATED_SPLIT)
        failed = set(read_failures(features))
        partial = is_incomplete(data, failed)
        if partial and not allow_missing:
            raise FeatureMismatch(_incomplete_text(data, failed, features, record.data["dataset"]))
        results = evaluate_model(model, data, variant.name, record.classes, batch_size, device)
    metrics = {"dataset": record.data["dataset"], "model": variant.name, "split": EVALUATED_SPLIT,
               "run_dir": str(run), "checkpoint_epoch": checkpoint["epoch"], "classes": list(record.classes),
               "clips": len(data), "missing_clips": len(data.missing), "partial": partial,
               "predicting_head": variant.predicting_head,
               "written": time.strftime("%Y-%m-%d %H:%M:%S"), "eval_config": config_values,
               "results": results, "head_comparison": head_comparison(results)}
    files.write_text(run / EVAL_METRICS_FILE, json.dumps(metrics, indent=1))
    files.write_text(run / EVAL_REPORT_FILE, report_text(metrics))
    plot_confusions(results, variant.predicting_head, record.classes, run / CONFUSION_FILE,
                    f"{variant.name} on {record.data['dataset']} {EVALUATED_SPLIT} ({variant.predicting_head} head)")
    return metrics


def _incomplete_text(data: ClipDataset, failed: set[str], features, dataset: str) -> str:
    unlisted = unlisted_missing(data, failed)
    return (f"{features} lacks {len(unlisted)} of the {len(data) + len(data.missing)} {EVALUATED_SPLIT} clips (e.g. "
            f"{unlisted[0]}) without listing them as failed: the rest's scores would pass for the whole split's; "
            f"finish the extraction with make features DATASET={dataset} (same feature options), or score the clips "
            "it has with --allow-missing (make eval ARGS=--allow-missing)")


def partial_note(metrics: dict) -> str:
    """What the table and report say of a split scored without some of its clips (--allow-missing), or ''."""
    if not metrics.get("partial"):
        return ""
    total = metrics["clips"] + metrics["missing_clips"]
    return (f"partial test split: {metrics['missing_clips']} of its {total} clips lack features (--allow-missing); "
            "these scores are not those of the whole split")


def head_comparison(results: dict) -> list[dict]:
    """Per condition: macro-F1 of the reference's average of all heads and of the present heads' average."""
    return [{"condition": condition, "average": by_head["average"]["f1_macro"],
             "present_average": by_head["present_average"]["f1_macro"]}
            for condition, by_head in results.items() if "present_average" in by_head]


def report_text(metrics: dict) -> str:
    results, classes = metrics["results"], metrics["classes"]
    lines = [f"# Evaluation of {metrics['model']} on {metrics['dataset']}, {metrics['split']} split",
             "", f"Run `{metrics['run_dir']}`, kept epoch {metrics['checkpoint_epoch']}; "
             f"{metrics['clips']} clips ({metrics['missing_clips']} of the split had no features).",
             f"Written {metrics['written']} by `python -m pipeline.evaluate`.", ""]
    if partial_note(metrics):
        lines += [f"**Note: {partial_note(metrics)}.**", ""]
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
    return "\n".join(lines)
