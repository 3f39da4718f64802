"""What ``make train`` does, as a library: one run of one variant on one partition.

Reads the corpus manifest (built first when missing; corpora.registry) and the extraction made
with the feature options given (extract.spec.find_extraction: the folder named from those
options, or --features-dir), through its index and shards. Only the clips of the train and
development splits are loaded; the test split is left to evaluation. Writes the run folder
(training.run_folder). A rerun of a finished run does nothing (FORCE=1 retrains from scratch);
an unfinished one resumes from last.pt; a run folder made with other settings is an error.

Training settings come from a preset (training/presets/<name>.yaml; by default the dataset's
when there is one, e.g. demo.yaml), and options on the command line override them.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from common.config import config_values, option
from common.device import resolve_device
from common.paths import record_path
from corpora.manifest import Manifest, load_manifest
from corpora.registry import LABELLED_DATASETS, ManifestConfig, build_manifest, dataset_reader
from extract.engine import read_failures
from extract.shards import FeatureStore
from extract.spec import ExtractionRecord, ExtractionSpec, find_extraction
from model.auxformer import MISSING_STAND_INS, AuxFormerConfig
from model.data import ClipDataset, is_incomplete, split_dataset, unlisted_missing
from training.config import TrainConfig, TrainingError
from training.distributed import Distributed
from training.loop import check_trainable, train
from training.run_folder import RunFolder, RunRecord, environment, run_path, split_name

PRESETS_DIR = Path(__file__).parent / "presets"
TRAINED_SPLITS = ("train", "development")


@dataclass
class TrainStageConfig(TrainConfig, ExtractionSpec):
    preset: str = option("dataset", "training settings: a name in training/presets/ or a YAML file; 'dataset' "
                                    "for the dataset's preset when there is one; 'none' for the defaults below")
    dataset: str = option("demo", f"corpus: {', '.join(LABELLED_DATASETS)}")
    partition: int = option(1, "speaker-independent partition, 1-5")
    label_rule: str = option("", "label rule; '' for the dataset's default (see make manifest)")
    ratings: str = option("", "ratings the perceived labels use (demo, crema): '' for the dataset's default, "
                              "audiovisual, voice or face")
    partition_file: str = option("", "take clips, labels and splits from this CSV in the reference format")
    corpus_dir: str = option("", "corpus folder, when not the dataset's default")
    features_dir: str = option("", "extraction folder; default the one made with the feature options here")
    features_root: Path = option(Path("data/features"), "where make features put its extractions")
    manifests_dir: Path = option(Path("data/manifests"), "where the corpus manifest is found or built")
    width: int = option(AuxFormerConfig.width, "model width (AuxFormerConfig)")
    num_heads: int = option(AuxFormerConfig.num_heads, "attention heads (AuxFormerConfig)")
    num_layers: int = option(AuxFormerConfig.num_layers, "layers per transformer (AuxFormerConfig)")
    # The pools follow each encoder's frame rate (from the extraction's index): by default the
    # 100 frames a second of the log-mel and of eGeMAPS are averaged 4 at a time and wav2vec2's 50
    # 2 at a time, to 25, near a video's frame rate; the video is kept at its own (1 at 30 fps).
    # Attention memory grows with the square of the steps.
    audio_pool: int = option(0, "average the audio features over windows of this many frames (AuxFormerConfig); "
                                "0: the window that brings them nearest to --audio-pooled-rate")
    video_pool: int = option(0, "average the face embeddings over windows of this many frames (AuxFormerConfig); "
                                "0: the window that brings them nearest to --video-pooled-rate")
    audio_pooled_rate: float = option(25.0, "with --audio-pool 0: audio steps a second the model sees")
    video_pooled_rate: float = option(30.0, "with --video-pool 0: video steps a second the model sees")
    embed_dropout: float = option(AuxFormerConfig.embed_dropout, "dropout on every transformer's embedded input "
                                                                  "(AuxFormerConfig; the reference's 0.25)")
    missing_stand_in: str = option("learned", f"what a missing or dropped modality is attended as: "
                                              f"{' or '.join(MISSING_STAND_INS)} (AuxFormerConfig; zero is the "
                                              "reference's)")
    runs_root: Path = option(Path("runs"), "runs go to <runs-root>/<dataset>/<split>/<model>/")
    run_dir: str = option("", "the run folder itself, instead of the one under --runs-root")
    force: bool = option(False, "retrain from scratch even when the run is finished")

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        ExtractionSpec.__post_init__(self)
        dataset_reader(self.dataset)
        if self.missing_stand_in not in MISSING_STAND_INS:
            raise TrainingError(f"--missing-stand-in must be one of {', '.join(MISSING_STAND_INS)}, "
                                f"got {self.missing_stand_in!r}")
        if self.audio_pool < 0 or self.video_pool < 0 or self.audio_pooled_rate <= 0 or self.video_pooled_rate <= 0:
            raise TrainingError("--audio-pool and --video-pool must be at least 0 (0: from the features' frame rate), "
                                "--audio-pooled-rate and --video-pooled-rate positive")
        if self.dataset not in LABELLED_DATASETS:
            raise TrainingError(f"dataset {self.dataset} has no labels to train on; choose one of "
                                f"{', '.join(LABELLED_DATASETS)}")
        self._check_model_options()

    def _check_model_options(self) -> None:
        """Refuse the model and device options training would refuse, before anything is read or created: the
        model for features of any size, and the device."""
        try:
            model_config = self.model_config(1, 1, 2, self.audio_pooled_rate, self.video_pooled_rate)
        except ValueError as error:  # AuxFormerConfig's own checks
            raise TrainingError(f"{error}: choose other model options (--width, --num-heads, ...)") from None
        check_trainable(model_config, self)
        resolve_device(self.device)

    @staticmethod
    def preset_values(namespace) -> dict:
        """The preset's values, by name or path; {} for 'none' or a dataset without a preset."""
        name = namespace.preset
        if name == "none":
            return {}
        if name == "dataset":
            path = PRESETS_DIR / f"{namespace.dataset}.yaml"
            if not path.is_file():
                return {}
        else:
            path = PRESETS_DIR / f"{name}.yaml"
            path = path if path.is_file() else Path(name)
            if not path.is_file():
                known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
                raise TrainingError(f"--preset {name}: neither a preset ({known}) nor a YAML file")
        values = _read_preset(path)
        unknown = set(values) - {f.name for f in fields(TrainStageConfig)}
        if unknown:
            raise TrainingError(f"{path}: unknown training options {', '.join(sorted(map(str, unknown)))}")
        return values

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})

    def manifest_config(self) -> ManifestConfig:
        return ManifestConfig(dataset=self.dataset, corpus_dir=self.corpus_dir, label_rule=self.label_rule,
                              ratings=self.ratings, partition=self.partition, partition_file=self.partition_file,
                              out_dir=self.manifests_dir)

    def model_config(self, audio_dim: int, video_dim: int, n_classes: int, audio_rate: float,
                     video_rate: float) -> AuxFormerConfig:
        """The model for features of these sizes and frame rates (the rates choose the pools left at 0)."""
        audio_pool = self.audio_pool or pool_for(audio_rate, self.audio_pooled_rate)
        video_pool = self.video_pool or pool_for(video_rate, self.video_pooled_rate)
        return AuxFormerConfig(audio_dim=audio_dim, video_dim=video_dim, n_classes=n_classes, width=self.width,
                               num_heads=self.num_heads, num_layers=self.num_layers, audio_pool=audio_pool,
                               video_pool=video_pool, embed_dropout=self.embed_dropout,
                               missing_stand_in=self.missing_stand_in)

    def run_folder(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        return run_path(self.runs_root, self.dataset, split_name(self), self.model)


PRESET_FORM = "a preset is a YAML mapping of training options (name: value), as training/presets/demo.yaml is"


def _read_preset(path: Path) -> dict:
    """The options a preset file sets; TrainingError when the file holds no mapping of options."""
    try:
        values = yaml.safe_load(path.read_text())
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise TrainingError(f"{path} is not a preset (no YAML text: {type(error).__name__}); {PRESET_FORM}") from None
    if values is None:  # an empty preset sets nothing
        return {}
    if not isinstance(values, dict):
        raise TrainingError(f"{path} is not a preset (it holds a YAML {type(values).__name__}); {PRESET_FORM}")
    return values


def pool_for(frame_rate: float, pooled_rate: float) -> int:
    """The window, in frames, that brings ``frame_rate`` frames a second nearest to ``pooled_rate``."""
    return max(1, round(frame_rate / pooled_rate))


def _split_data(store: FeatureStore, manifest: Manifest, split: str, failed: set[str], run: RunFolder,
                config: TrainStageConfig) -> ClipDataset:
    data = split_dataset(store, manifest, split)
    unexplained = unlisted_missing(data, failed)
    total = len(data) + len(data.missing)
    if is_incomplete(data, failed):
        raise TrainingError(f"{store.folder} lacks {len(unexplained)} of the {total} {split} clips (e.g. "
                            f"{unexplained[0]}): the extraction is incomplete; finish it with make features "
                            f"DATASET={config.dataset} (same feature options), then check it with make verify-features")
    if data.missing:
        run.log(f"{len(data.missing)} of {total} {split} clips have no features in {store.folder}, "
                f"{len(data.missing) - len(unexplained)} of them listed in its failures files; skipped "
                f"(e.g. {data.missing[0]})")
    return data


def run_training(config: TrainStageConfig, distributed: Distributed = Distributed()) -> RunFolder:
    """Train (or resume, or skip a finished run); returns the run folder."""
    features = find_extraction(config.features_root, config.dataset, ExtractionSpec.of(config), config.features_dir)
    extraction = ExtractionRecord.load(features)
    if distributed.is_main:  # the others find it built
        build_manifest(config.manifest_config())
    distributed.barrier()
    manifest_dir, _ = build_manifest(config.manifest_config())
    manifest = load_manifest(manifest_dir)
    run = RunFolder(config.run_folder(), writer=distributed.is_main)
    with run.training_lock(), FeatureStore(features) as store:
        dims = store.dims()
        model_config = config.model_config(dims.audio_dim, dims.video_dim, len(manifest.meta.classes),
                                           dims.audio_rate, store.video_rate())
        if config.force and distributed.is_main:
            shutil.rmtree(run.path, ignore_errors=True)
        distributed.barrier()
        record = RunRecord(
            stage=config_values(config), model=model_config.to_dict(), variant=config.model,
            classes=list(manifest.meta.classes),
            data={"dataset": config.dataset, "manifest": record_path(manifest_dir),
                  "label_rule": manifest.meta.label_rule, "ratings": manifest.meta.ratings,
                  "features": record_path(features)},
            environment=environment(str(resolve_device(config.device, distributed.local_rank))))
        run.check_same_run(record)
        if distributed.is_main:
            run.remove_leftovers()
        done = run.completed_epochs()
        if done >= config.epochs:
            if distributed.is_main:
                print(f"train: {run} is finished ({done} epochs); FORCE=1 retrains it")
            return run
        run.write_record(record, extraction)
        distributed.barrier()
        failed = set(read_failures(features))
        train_data, dev_data = (_split_data(store, manifest, split, failed, run, config) for split in TRAINED_SPLITS)
        train(model_config, config.train_config(), train_data, dev_data, run, manifest.meta.classes, distributed)
    return run
