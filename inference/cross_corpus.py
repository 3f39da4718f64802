"""Scoring a trained run on another dataset's clips (cross-corpus): metrics.json, report.md and
confusion.png in ``<run>/cross/<dataset>-<split>/``, apart from the run's own evaluation.

The other dataset's manifest is found or built as make manifest builds it (its corpus options,
``target``), and its features must come from an extraction made with the run's own feature
options (the run folder's extraction.yaml): the features of ``make features DATASET=<dataset>``
with those options, which the error gives in full when they are not there.

Classes are matched by name (corpora.ravdess names the emotions CREMA-D also has by CREMA-D's
class names). Only the shared classes are scored: clips of the dataset's other classes are left
out, and the model's outputs are restricted to the shared classes before the argmax, so a class
the dataset lacks is never predicted. Both lists are printed and written in the report.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from common import files
from common.config import command_line
from common.device import resolve_device
from corpora.manifest import SPLITS, ClipRecord, load_manifest
from corpora.registry import ManifestConfig, build_manifest
from extract.shards import FeatureStore
from extract.spec import EXTRACTION_FILE, ExtractionRecord, extraction_folder
from inference.evaluation import head_comparison, report_text
from model.auxformer import AuxFormer
from model.data import ClipDataset, FeatureMismatch
from model.evaluation import evaluate_model, plot_confusions
from model.variants import VARIANTS
from training.run_folder import BEST_CHECKPOINT, CONFUSION_FILE, EVAL_METRICS_FILE, EVAL_REPORT_FILE, RunFolder

CROSS_DIR = "cross"
ALL_SPLITS = "all"
ON_SPLITS = (*SPLITS, ALL_SPLITS)


def cross_folder(run: RunFolder, dataset: str, split: str) -> Path:
    return run.path / CROSS_DIR / f"{dataset}-{split}"


def evaluate_across(run: RunFolder, target: ManifestConfig, split: str, features_dir: str, features_root: Path,
                    batch_size: int, device_name: str, config_values: dict) -> dict:
    """Score the run on ``split`` (one of ON_SPLITS) of the dataset ``target`` names; returns the metrics it
    writes."""
    record = run.record()
    extraction = run.extraction()
    features = Path(features_dir) if features_dir else extraction_folder(features_root, target.dataset,
                                                                          extraction.spec)
    _check_features(features, extraction, target)
    manifest_folder, _ = build_manifest(target)
    manifest = load_manifest(manifest_folder)
    mapping = class_mapping(record.classes, manifest.meta.classes)
    if not mapping["shared"]:
        raise FeatureMismatch(f"the run's classes ({', '.join(record.classes)}) and {target.dataset}'s "
                              f"({', '.join(manifest.meta.classes)}) share no name: nothing to score")
    chosen = scored_clips(manifest.clips, split)
    scored = [clip for clip in chosen if clip.label in mapping["shared"]]
    left_out = Counter(clip.label for clip in chosen if clip.label not in mapping["shared"])
    variant = VARIANTS[record.variant]
    checkpoint = run.load_checkpoint(BEST_CHECKPOINT)
    device = resolve_device(device_name)
    model = AuxFormer.from_checkpoint(checkpoint).to(device)
    with FeatureStore(features) as store:
        data = ClipDataset(store, scored, mapping["shared"], soft_targets=False)
        if not len(data):
            raise FeatureMismatch(f"{features} holds none of the {len(scored)} clips to score; run "
                                  f"{features_command(target, extraction)}")
        columns = [record.classes.index(name) for name in mapping["shared"]]
        results = evaluate_model(model, data, variant.name, mapping["shared"], batch_size, device, columns)
    metrics = {"dataset": target.dataset, "trained_on": record.data["dataset"], "model": variant.name,
               "split": split, "run_dir": str(run), "checkpoint_epoch": checkpoint["epoch"],
               "classes": mapping["shared"], "class_mapping": mapping, "clips": len(data),
               "missing_clips": len(data.missing), "left_out_clips": dict(sorted(left_out.items())),
               "partial": False, "predicting_head": variant.predicting_head, "features": str(features),
               "manifest": str(manifest_folder), "written": time.strftime("%Y-%m-%d %H:%M:%S"),
               "eval_config": config_values, "results": results, "head_comparison": head_comparison(results)}
    out = cross_folder(run, target.dataset, split)
    out.mkdir(parents=True, exist_ok=True)
    files.write_text(out / EVAL_METRICS_FILE, json.dumps(metrics, indent=1))
    files.write_text(out / EVAL_REPORT_FILE, cross_report_text(metrics))
    plot_confusions(results, variant.predicting_head, mapping["shared"], out / CONFUSION_FILE,
                    f"{variant.name} ({record.data['dataset']}) on {target.dataset} {split}, shared classes")
    return metrics


def class_mapping(run_classes: tuple[str, ...], dataset_classes: tuple[str, ...]) -> dict:
    """The classes shared by name (in the run's order), and those only one side has."""
    return {"shared": tuple(name for name in run_classes if name in dataset_classes),
            "run_only": [name for name in run_classes if name not in dataset_classes],
            "dataset_only": [name for name in dataset_classes if name not in run_classes]}


def mapping_text(metrics: dict) -> list[str]:
    """The lines that say which classes were scored and which were left out."""
    mapping, left_out = metrics["class_mapping"], metrics["left_out_clips"]
    lines = [f"classes matched by name, scored: {', '.join(mapping['shared'])} (the model's outputs restricted "
             "to these before the argmax)"]
    if mapping["run_only"]:
        lines.append(f"model classes {metrics['dataset']} lacks, never predicted: {', '.join(mapping['run_only'])}")
    if mapping["dataset_only"]:
        counts = ", ".join(f"{name} ({left_out.get(name, 0)} clips)" for name in mapping["dataset_only"])
        lines.append(f"{metrics['dataset']} classes the model lacks, clips left out: {counts}")
    return lines


def cross_report_text(metrics: dict) -> str:
    heading = (f"# Cross-corpus evaluation: {metrics['model']} trained on {metrics['trained_on']}, scored on "
               f"{metrics['dataset']}, {metrics['split']}")
    body = report_text(metrics).split("\n", 1)[1]
    mapping = "\n".join(f"- {line}" for line in mapping_text(metrics))
    return f"{heading}\n\n{mapping}\n\nManifest `{metrics['manifest']}`, features `{metrics['features']}`.\n{body}"


def features_command(target: ManifestConfig, extraction: ExtractionRecord) -> str:
    """The make features command that extracts the dataset with the run's feature options."""
    corpus = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in
                      (("corpus_dir", target.corpus_dir), ("labels", target.labels)) if value)
    options = command_line(extraction.spec)
    words = ["make features", f"DATASET={target.dataset}", f'FEATURES="{options}"' if options else "",
             f'ARGS="{corpus}"' if corpus else ""]
    return " ".join(word for word in words if word)


def _check_features(features: Path, extraction: ExtractionRecord, target: ManifestConfig) -> None:
    if not (features / EXTRACTION_FILE).is_file():
        raise FeatureMismatch(f"{features}: no features of {target.dataset} made with the run's feature options; "
                              f"extract them with {features_command(target, extraction)}")
    differences = extraction.differences(ExtractionRecord.load(features))
    if differences:
        raise FeatureMismatch(f"{features} was extracted otherwise than the run's features ({'; '.join(differences)});"
                              f" extract {target.dataset} with {features_command(target, extraction)}")


def scored_clips(clips: list[ClipRecord], split: str) -> list[ClipRecord]:
    """The clips of ``split`` (every split for ``all``)."""
    return [clip for clip in clips if clip.split and (split == ALL_SPLITS or clip.split == split)]
