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
from dataclasses import dataclass
from pathlib import Path

import yaml

from common.config import config_values, option, option_names, part, wrong_types
from common.device import resolve_device
from common.paths import record_path
from corpora.manifest import Manifest, load_manifest
from corpora.registry import LABELLED_DATASETS, ManifestConfig, build_manifest, dataset_reader
from extract.engine import read_failures
from extract.shards import FeatureStore
from extract.spec import ExtractionRecord, ExtractionSpec, find_extraction
from model.data import ClipDataset, is_incomplete, split_dataset, unlisted_missing
from model.options import ModelOptions
from training.config import TrainConfig, TrainingError
from training.distributed import Distributed
from training.loop import check_trainable, train
from training.run_folder import RunFolder, RunRecord, environment, run_path, split_name

PRESETS_DIR = Path(__file__).parent / "presets"
TRAINED_SPLITS = ("train", "development")


@dataclass
class TrainStageConfig:
    """make train's options: the stage's own, and its parts. The manifest and the extraction it
    trains on are *named* by the options that made them (``--manifest``, ``--features``: make
    manifest's and make features' options, each as one string or one by one), so that neither
    stage's options are training options; the model and the training are parts of their own."""

    preset: str = option("dataset", "training settings: a name in training/presets/ or a YAML file; 'dataset' "
                                    "for the dataset's preset when there is one; 'none' for the defaults below")
    dataset: str = option("demo", f"corpus: {', '.join(LABELLED_DATASETS)}")
    partition: int = option(1, "speaker-independent partition, 1-5")
    manifest: ManifestConfig = part(ManifestConfig, "the options of make manifest that name the manifest, as one "
                                                    "string, e.g. \"--label-rule plurality --corpus-dir D\"",
                                    bundled=True, shared=("dataset", "partition"), excluded=("force",))
    features: ExtractionSpec = part(ExtractionSpec, "the feature options of make features that name the extraction, "
                                                    "as one string, e.g. \"--audio-encoder egemaps --face-rate 5\" "
                                                    "(default: make features' defaults)", bundled=True)
    features_dir: str = option("", "the extraction folder itself, instead of the one --features names")
    features_root: Path = option(Path("data/features"), "where make features put its extractions")
    model_options: ModelOptions = part(ModelOptions)
    training: TrainConfig = part(TrainConfig)
    runs_root: Path = option(Path("runs"), "runs go to <runs-root>/<dataset>/<split>/<model>/")
    run_dir: str = option("", "the run folder itself, instead of the one under --runs-root")
    force: bool = option(False, "retrain from scratch even when the run is finished")

    def __post_init__(self) -> None:
        dataset_reader(self.dataset)
        if self.dataset not in LABELLED_DATASETS:
            raise TrainingError(f"dataset {self.dataset} has no labels to train on; choose one of "
                                f"{', '.join(LABELLED_DATASETS)}")
        self._check_model_options()

    def _check_model_options(self) -> None:
        """Refuse the model and device options training would refuse, before anything is read or created (the
        model options check their sizes themselves)."""
        check_trainable(self.model_options.model_config(1, 1, 2, 1.0, 1.0), self.training)
        resolve_device(self.training.device)

    @staticmethod
    def preset_values(given) -> dict:
        """The preset's values, by name or path; {} for 'none' or a dataset without a preset."""
        name = given.preset
        if name == "none":
            return {}
        if name == "dataset":
            path = PRESETS_DIR / f"{given.dataset}.yaml"
            if not path.is_file():
                return {}
        else:
            path = PRESETS_DIR / f"{name}.yaml"
            path = path if path.is_file() else Path(name)
            if not path.is_file():
                known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
                raise TrainingError(f"--preset {name}: neither a preset ({known}) nor a YAML file")
        values = _read_preset(path)
        unknown = set(values) - option_names(TrainStageConfig)
        if unknown:
            raise TrainingError(f"{path}: unknown training options {', '.join(sorted(map(str, unknown)))}")
        wrong = wrong_types(TrainStageConfig, values)
        if wrong:
            raise TrainingError(f"{path}: {', '.join(wrong)}; {PRESET_FORM}")
        return values

    def run_folder(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        return run_path(self.runs_root, self.dataset, split_name(self.manifest), self.training.model)


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
    features = find_extraction(config.features_root, config.dataset, config.features, config.features_dir)
    extraction = ExtractionRecord.load(features)
    if distributed.is_main:  # the others find it built
        build_manifest(config.manifest)
    distributed.barrier()
    manifest_dir, _ = build_manifest(config.manifest)
    manifest = load_manifest(manifest_dir)
    run = RunFolder(config.run_folder(), writer=distributed.is_main)
    with run.training_lock(), FeatureStore(features, extraction.folder) as store:
        dims = store.dims()
        model_config = config.model_options.model_config(dims.audio_dim, dims.video_dim, len(manifest.meta.classes),
                                                         dims.audio_rate, store.video_rate())
        if config.force and distributed.is_main:
            # The folder the path leads to: rmtree refuses a link, and FORCE through one must still retrain.
            shutil.rmtree(run.path.resolve(), ignore_errors=True)
        distributed.barrier()
        record = RunRecord(
            stage=config_values(config), model=model_config.to_dict(), variant=config.training.model,
            classes=list(manifest.meta.classes),
            data={"dataset": config.dataset, "manifest": record_path(manifest_dir),
                  "label_rule": manifest.meta.label_rule, "ratings": manifest.meta.ratings,
                  "features": record_path(features)},
            environment=environment(str(resolve_device(config.training.device, distributed.local_rank))))
        run.check_same_run(record)
        if distributed.is_main:
            run.remove_leftovers()
        done = run.completed_epochs()
        if done >= config.training.epochs:
            if distributed.is_main:
                print(f"train: {run} is finished ({done} epochs); FORCE=1 retrains it")
            return run
        run.write_record(record, extraction)
        distributed.barrier()
        failed = set(read_failures(features))
        train_data, dev_data = (_split_data(store, manifest, split, failed, run, config) for split in TRAINED_SPLITS)
        train(model_config, config.training, train_data, dev_data, run, manifest.meta.classes, distributed)
    return run
