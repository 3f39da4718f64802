"""Stage: turn a checkpoint of the reference AuxFormer code into a run folder (``make convert-reference``).

Reads SOURCE, the state dict the reference saves (its ``final_head.pt``), converted by
model.convert_reference; optionally an extraction folder whose features the model takes
(--features-dir: its extraction.yaml is copied in, so that prediction can rebuild it) and a
manifest to evaluate on (--manifest). Writes --out-dir as a run folder (training.run_folder):
best.pt (the converted weights, with --classes and epoch 0), config.yaml and, with
--features-dir, extraction.yaml. make eval and make predict then read it with --run-dir.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_stage
from common.config import config_values, option
from common.paths import record_path
from corpora.manifest import load_manifest
from extract.audio_encoders.wav2vec2 import REFERENCE_CHECKPOINT
from extract.shards import FeatureStore
from extract.spec import ExtractionRecord
from model.auxformer import AuxFormerConfig
from model.convert_reference import ConversionError, convert_checkpoint
from model.data import FeatureMismatch, check_features
from training.run_folder import BEST_CHECKPOINT, RunFolder, RunRecord, environment


@dataclass
class ConvertConfig:
    source: str = option("", "state dict saved by the reference implementation")
    out_dir: str = option("", "the run folder to write")
    classes: str = option("", "the class names in the order of the model's outputs, comma-separated")
    num_heads: int = option(10, "attention heads the reference model was built with")
    causal_mask: bool = option(True, "the reference's attn_mask: off when it was run with --attn_mask")
    features_dir: str = option("", "extraction folder whose features the model takes (for prediction)")
    manifest: str = option("", "manifest folder whose test split make eval scores")
    variant: str = option("auxformer", "which variant the weights were trained as")


def convert(config: ConvertConfig) -> int:
    if not config.source or not config.out_dir or not config.classes:
        raise ConversionError("give --source, --out-dir and --classes (e.g. --classes ANG,DIS,FEA,HAP,NEU,SAD)")
    checkpoint = convert_checkpoint(Path(config.source), config.num_heads, config.causal_mask)
    model_config = AuxFormerConfig.from_dict(checkpoint["model_config"])
    classes = [name.strip() for name in config.classes.split(",") if name.strip()]
    if len(classes) != model_config.n_classes:
        raise ConversionError(f"--classes names {len(classes)} classes, the weights have {model_config.n_classes}")
    data = {"dataset": "", "manifest": "", "label_rule": "", "ratings": "", "features": ""}
    extraction = None
    if config.features_dir:
        extraction = ExtractionRecord.load(Path(config.features_dir))
        with FeatureStore(Path(config.features_dir)) as store:
            try:
                check_features(store, model_config)
            except FeatureMismatch as error:
                raise FeatureMismatch(
                    f"{error}. The checkpoint needs {model_config.audio_dim}-d audio features (the reference's are "
                    f"{REFERENCE_CHECKPOINT} layer 12: --audio-encoder wav2vec2 with a {model_config.audio_dim}-wide "
                    f"checkpoint) and {model_config.video_dim}-d video features (e.g. imported with "
                    "--video-features-from DIR --video-rate R)") from None
        data.update(dataset=extraction.dataset, features=record_path(Path(config.features_dir)))
    if config.manifest:
        meta = load_manifest(Path(config.manifest)).meta
        data.update(dataset=meta.dataset, manifest=record_path(Path(config.manifest)), label_rule=meta.label_rule,
                    ratings=meta.ratings)
    run = RunFolder(Path(config.out_dir))
    record = RunRecord(stage=config_values(config), model=model_config.to_dict(), variant=config.variant,
                       classes=classes, data=data, environment=environment("cpu"))
    run.write_record(record, extraction)
    run.save_checkpoint({**checkpoint, "classes": classes, "epoch": 0, "best": None}, BEST_CHECKPOINT)
    print(f"convert-reference: wrote the run folder {run}: {model_config.to_dict()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("convert-reference", ConvertConfig, convert, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
