"""Stage: train AuxFormer or a baseline on one partition of a corpus (``make train``).

Reads the corpus manifest (built first when missing; see pipeline.manifest) and an extraction
folder: by default the newest under data/features/<dataset>/ (its extraction.yaml, index.csv and
shards). Only the clips of the train and development splits are loaded; the test split is left
to evaluation.
Writes runs/<dataset>/<split>/<model>/, where <split> is p<k> for partition k under the dataset's
default label rule, p<k>-<rule> under another rule, and file-<name> for a partition file:
config.yaml (this stage's config, training options included, the model config, the classes, the manifest, the feature
folder and its extraction identity, so evaluation and prediction can rebuild the features),
train.log, metrics.csv, curve.png, best.pt (the kept epoch) and last.pt (see model.training).
A rerun of a finished run does nothing (FORCE=1 retrains from scratch); an unfinished one
resumes from last.pt; a run folder made with other settings is an error.

Distributed: the same command under ``torchrun --nproc_per_node=N`` (and torchrun's multi-node
options) trains with DistributedDataParallel, one process per GPU or, on CPU, N processes;
only rank 0 writes (see model.training).
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import yaml

from corpora.manifest import CorpusError, Manifest, load_manifest, repo_relative
from extract.shards import FeatureStore
from model.auxformer import AuxFormerConfig
from model.data import (EXTRACTION_FILE, SOFT_LABEL_RULE, ClipDataset, FeatureMismatch, check_features,
                        feature_dims)
from model.training import (FREE_ON_RESUME, LAST_CHECKPOINT, LOG_FILE, Distributed, RunLog, TrainConfig,
                            TrainingError, completed_epochs, init_distributed, train)
from pipeline.config import option, parse_config, to_yaml
from pipeline.manifest import DATASETS, ManifestConfig, build_manifest
from pipeline.verify_features import VerifyConfig

TRAINABLE_DATASETS = ("demo", "crema", "improv")
RUN_CONFIG_FILE = "config.yaml"
TRAINED_SPLITS = ("train", "development")


@dataclass
class TrainStageConfig(TrainConfig):
    dataset: str = option("demo", f"corpus: {', '.join(TRAINABLE_DATASETS)}")
    partition: int = option(1, "speaker-independent partition, 1-5")
    label_rule: str = option("", "label rule; '' for the dataset's default (see make manifest)")
    partition_file: str = option("", "take clips, labels and splits from this CSV in the reference format")
    corpus_dir: str = option("", "corpus folder, when not the dataset's default")
    features_dir: str = option("", "extraction folder; default the newest under data/features/<dataset>/")
    manifests_dir: Path = option(Path("data/manifests"), "where the corpus manifest is found or built")
    width: int = option(AuxFormerConfig.width, "model width (AuxFormerConfig)")
    num_heads: int = option(AuxFormerConfig.num_heads, "attention heads (AuxFormerConfig)")
    num_layers: int = option(AuxFormerConfig.num_layers, "layers per transformer (AuxFormerConfig)")
    # 4 brings the 100 steps a second of a 10 ms log-mel to 25, near the video's frame rate; the
    # reference's wav2vec2 features have 50. Attention memory grows with the square of the steps.
    audio_pool: int = option(4, "average the log-mel over windows of this many frames (AuxFormerConfig)")
    video_pool: int = option(1, "average the face embeddings over windows of this many frames (AuxFormerConfig)")
    embed_dropout: float = option(AuxFormerConfig.embed_dropout,
                                  "dropout on every transformer's embedded input (AuxFormerConfig; the reference's 0.25)")
    runs_root: Path = option(Path("runs"), "runs go to <runs-root>/<dataset>/<split>/<model>/")
    force: bool = option(False, "retrain from scratch even when the run is finished")

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})

    def manifest_config(self) -> ManifestConfig:
        return ManifestConfig(dataset=self.dataset, corpus_dir=self.corpus_dir, label_rule=self.label_rule,
                              partition=self.partition, partition_file=self.partition_file,
                              out_dir=self.manifests_dir)

    def run_dir(self) -> Path:
        if self.partition_file:
            split = f"file-{Path(self.partition_file).stem}"
        elif self.label_rule and self.label_rule != DATASETS[self.dataset].default_rule:
            split = f"p{self.partition}-{self.label_rule}"
        else:
            split = f"p{self.partition}"
        return self.runs_root / self.dataset / split / self.model


def features_folder(config: TrainStageConfig) -> Path:
    """The extraction to train on; CorpusError or FeatureMismatch when there is none."""
    folder = VerifyConfig(dataset=config.dataset, features_dir=config.features_dir).folder()
    if not (folder / EXTRACTION_FILE).is_file():
        raise FeatureMismatch(f"{folder}: not an extraction folder (no {EXTRACTION_FILE}); "
                              f"run make features DATASET={config.dataset}")
    return folder


def run_record(config: TrainStageConfig, manifest_dir: Path, manifest: Manifest, features: Path,
               model_config: AuxFormerConfig) -> dict:
    """What config.yaml holds: everything that determines the run."""
    identity = yaml.safe_load((features / EXTRACTION_FILE).read_text())["identity"]
    return {"stage": yaml.safe_load(to_yaml(config)), "model": model_config.to_dict(),
            "data": {"dataset": config.dataset, "manifest": repo_relative(manifest_dir),
                     "label_rule": manifest.meta.label_rule, "classes": list(manifest.meta.classes),
                     "features": repo_relative(features), "extraction_identity": identity}}


def _comparable(record: dict) -> dict:
    """The record without what may change between a run and its resumption."""
    free = set(FREE_ON_RESUME) | {"force"}
    return {**record, "stage": {k: v for k, v in record["stage"].items() if k not in free}}


def check_same_run(run_dir: Path, record: dict) -> None:
    path = run_dir / RUN_CONFIG_FILE
    if not (run_dir / LAST_CHECKPOINT).is_file() or not path.is_file():
        return
    stored, current = _comparable(yaml.safe_load(path.read_text())), _comparable(record)
    differing = sorted(f"{part}.{name}" for part in current for name in set(stored.get(part, {})) | set(current[part])
                       if stored.get(part, {}).get(name) != current[part].get(name))
    if differing:
        raise TrainingError(f"{run_dir} holds a run with other settings ({', '.join(differing)}); "
                            "retrain it with FORCE=1, or give another --runs-root")


def split_data(store: FeatureStore, manifest: Manifest, split: str, log: RunLog) -> ClipDataset:
    data = ClipDataset(store, manifest.in_split(split), manifest.meta.classes,
                       soft_targets=manifest.meta.label_rule == SOFT_LABEL_RULE)
    if data.missing:
        log(f"{len(data.missing)} of {len(data.missing) + len(data)} {split} clips have no features in "
            f"{store.folder}; skipped (e.g. {data.missing[0]})")
    if not len(data):
        raise FeatureMismatch(f"none of the {len(data.missing)} {split} clips are in {store.folder}: features of "
                              f"another corpus? run make features DATASET={manifest.meta.dataset}")
    return data


def run(config: TrainStageConfig, distributed: Distributed = Distributed()) -> Path:
    """Train (or resume, or skip a finished run); returns the run folder."""
    if config.dataset not in TRAINABLE_DATASETS:
        raise CorpusError(f"unknown dataset {config.dataset!r}; choose one of {', '.join(TRAINABLE_DATASETS)}")
    features = features_folder(config)
    dims = feature_dims(features)
    if distributed.is_main:  # the others find it built
        build_manifest(config.manifest_config())
    distributed.barrier()
    manifest_dir, _ = build_manifest(config.manifest_config())
    manifest = load_manifest(manifest_dir)
    model_config = AuxFormerConfig(audio_dim=dims.n_mels, video_dim=dims.embedding_dim,
                                   n_classes=len(manifest.meta.classes), width=config.width,
                                   num_heads=config.num_heads, num_layers=config.num_layers,
                                   audio_pool=config.audio_pool, video_pool=config.video_pool,
                                   embed_dropout=config.embed_dropout)
    check_features(features, model_config)
    run_dir = config.run_dir()
    if config.force and distributed.is_main:
        shutil.rmtree(run_dir, ignore_errors=True)
    distributed.barrier()
    record = run_record(config, manifest_dir, manifest, features, model_config)
    check_same_run(run_dir, record)
    done = completed_epochs(run_dir)
    if done >= config.epochs:
        if distributed.is_main:
            print(f"train: {run_dir} is finished ({done} epochs); FORCE=1 retrains it")
        return run_dir
    if distributed.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_CONFIG_FILE).write_text(yaml.safe_dump(record, sort_keys=False))
    distributed.barrier()
    log = RunLog(run_dir / LOG_FILE, enabled=distributed.is_main)
    store = FeatureStore(features)
    try:
        train_data, dev_data = (split_data(store, manifest, split, log) for split in TRAINED_SPLITS)
        train(model_config, config.train_config(), train_data, dev_data, run_dir, manifest.meta.classes,
              distributed)
    finally:
        store.close()
    return run_dir


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(TrainStageConfig, argv, description=__doc__)
        distributed = init_distributed(config.device)
        run_dir = run(config, distributed)
    except (CorpusError, FeatureMismatch, TrainingError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if distributed.is_main:
        print(f"train: run folder {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
