"""The run folder: the one owner of what training writes and what evaluation and prediction read.

A run folder (``runs/<dataset>/<split>/<model>/``, named by ``run_path``) is self-contained:

    config.yaml     every option of the training stage, the model config, the classes, the data it
                    was trained on (dataset, manifest, label rule, extraction folder) and the
                    environment (git commit, package versions, device)
    extraction.yaml the extraction spec of the features it was trained on (extract.spec), so that
                    prediction rebuilds the same extractor from the run folder alone
    best.pt         the kept epoch: model config, weights, classes, epoch, best metric
    last.pt         the last epoch, with optimizer and random state, for an exact resume
                    (both carry a sha256 of all they hold, checked on every load)
    train.log, metrics.csv, curve.png
    metrics.json, report.md, confusion.png   written by evaluation
    predictions/    written by prediction

Copied to another machine that has the pinned model files, the folder predicts on its own.
Paths inside it are fixed names; the manifest and extraction paths in config.yaml follow the
project's path rule (common.paths) and are needed only to evaluate on the recorded test split.

torch.load does not check the CRCs of the zip it reads, so each checkpoint carries a checksum of its
own: one flipped bit is refused, never scored or resumed. A checkpoint from before checksums is
loaded unchecked, with a one-line warning (last.pt gets one at its next save).
"""
from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import time
import typing
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from common import files
from common.config import option
from common.locks import exclusive_lock
from common.paths import REPO_ROOT, record_path
from corpora.registry import ManifestConfig, select
from extract.spec import EXTRACTION_FILE, ExtractionRecord
from model.variants import VARIANTS
from training.config import FREE_ON_RESUME, TrainingError

CONFIG_FILE = "config.yaml"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.csv"
CURVE_FILE = "curve.png"
EVAL_METRICS_FILE = "metrics.json"
EVAL_REPORT_FILE = "report.md"
CONFUSION_FILE = "confusion.png"
PREDICTIONS_DIR = "predictions"
METRIC_COLUMNS = ("epoch", "train_loss", "dev_loss", "dev_accuracy", "dev_macro_f1", "seconds",
                  "train_clips_per_second", "data_wait_share")
RECORDED_PACKAGES = ("torch", "numpy", "h5py", "scikit-learn")
# Stage options a resume may change: those free on resume, FORCE, and where the run folder lies (a moved
# folder holds the same run).
NOT_COMPARED = (*FREE_ON_RESUME, "force", "runs_root", "run_dir")
# Stage options that name files or folders: compared as the path rule records them (common.paths), so that
# one path spelled relative or absolute is one setting.
PATH_OPTIONS = ("corpus_dir", "labels", "partition_file", "manifests_dir", "features_dir", "features_root",
                "face_weights", "audio_weights", "video_features_from")
CHECKSUM_KEY = "sha256"
# What to do about a damaged checkpoint: best.pt is the kept epoch, last.pt what a resume goes on from.
CHECKPOINT_FIXES = {BEST_CHECKPOINT: "copy it back from a backup, or retrain with make train FORCE=1",
                    LAST_CHECKPOINT: "the run cannot go on from it: retrain with make train FORCE=1"}


def run_path(runs_root: Path, dataset: str, split_name: str, model: str) -> Path:
    return Path(runs_root) / dataset / split_name / model


def environment(device: str) -> dict:
    """What the run was made with, beyond its options."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    return {"commit": commit, "python": platform.python_version(), "device": device,
            "packages": {name: metadata.version(name) for name in RECORDED_PACKAGES}}


@dataclass
class RunRecord:
    """What config.yaml holds."""

    stage: dict  # every option of the stage that trained (or converted) the model
    model: dict  # AuxFormerConfig.to_dict()
    variant: str
    classes: list[str]
    data: dict  # dataset, manifest, label_rule, ratings, features: what it was trained on
    environment: dict

    def comparable(self) -> dict:
        """What must be the same for a run to be resumed."""
        return {"stage": comparable_options(self.stage), "model": self.model, "variant": self.variant,
                "classes": self.classes, "data": self.data}


def _record_problem(values) -> str:
    """What keeps the values read from config.yaml from being a RunRecord that evaluation can use, or ''."""
    if not isinstance(values, dict):
        return f"a YAML {type(values).__name__}, not a mapping"
    for field, kind in typing.get_type_hints(RunRecord).items():
        kind = typing.get_origin(kind) or kind
        if not isinstance(values.get(field), kind):
            found = f"a {type(values[field]).__name__}" if field in values else "missing"
            return f"{field} is {found}, not a {kind.__name__}"
    if values["variant"] not in VARIANTS:
        return f"unknown variant {values['variant']!r}"
    if not all(isinstance(name, str) for name in values["classes"]):
        return f"classes {values['classes']} are not all names"
    data = values["data"]
    if "dataset" not in data or not all(isinstance(value, str) for value in data.values()):
        return "data is not the names of what the run was trained on (dataset, manifest, features...)"
    return ""


def comparable_options(stage: dict) -> dict:
    """The options of the stage that trained a run that must be the same to resume it (its parts' flattened),
    paths by the path rule."""
    compared = {}
    for name, value in _flatten(stage).items():
        option = name.rsplit(".", 1)[-1]
        if option not in NOT_COMPARED:
            compared[name] = record_path(Path(value)) if option in PATH_OPTIONS and value else value
    return compared


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for name, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _setting_name(name: str) -> str:
    """A stage option as the user gives it (--lr); other settings by their place in config.yaml."""
    return "--" + name.rsplit(".", 1)[-1].replace("_", "-") if name.startswith("stage.") else name


class RunFolder:
    """Names, writes and reads one run folder; only ``writer`` processes write (rank 0)."""

    def __init__(self, path: Path, writer: bool = True):
        self.path = Path(path)
        self.writer = writer

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    # --- the record and the extraction spec -----------------------------------------------------

    def write_record(self, record: RunRecord, extraction: ExtractionRecord | None) -> None:
        """config.yaml, and the extraction spec copied in (None: a converted model with no extraction)."""
        if not self.writer:
            return
        self.path.resolve().mkdir(parents=True, exist_ok=True)  # through a link, the folder it leads to
        if extraction is not None:
            extraction.save(self.path)
        values = {"stage": record.stage, "model": record.model, "variant": record.variant,
                  "classes": list(record.classes), "data": record.data, "environment": record.environment}
        files.write_text(self / CONFIG_FILE, yaml.safe_dump(values, sort_keys=False))

    def record(self) -> RunRecord:
        path = self / CONFIG_FILE
        if not path.is_file():
            raise TrainingError(f"{self.path} holds no trained run (no {CONFIG_FILE}); train it first with "
                                "make train (same DATASET, PARTITION and MODEL), or give --run-dir")
        try:
            values = yaml.safe_load(path.read_text())
            problem = _record_problem(values)
        except (UnicodeDecodeError, yaml.YAMLError) as error:
            problem = f"not YAML text: {type(error).__name__}"
        if problem:
            raise TrainingError(f"{path} is damaged or from another version ({problem}); copy it back from a "
                                "backup, or retrain the run with make train FORCE=1")
        return RunRecord(**{name: values[name] for name in RunRecord.__dataclass_fields__})

    def extraction(self) -> ExtractionRecord:
        """The extraction the run was trained on, from the run folder's own copy."""
        if not (self / EXTRACTION_FILE).is_file():
            raise TrainingError(f"{self.path} records no extraction ({EXTRACTION_FILE}); a converted model needs "
                                "the extraction it takes: convert it again with --features-dir")
        return ExtractionRecord.load(self.path)

    def check_same_run(self, record: RunRecord) -> None:
        """TrainingError when the folder holds an unfinished or finished run with other settings."""
        if not (self / LAST_CHECKPOINT).is_file() or not (self / CONFIG_FILE).is_file():
            return
        stored, current = _flatten(self.record().comparable()), _flatten(record.comparable())
        differing = sorted(_setting_name(name) for name in set(stored) | set(current)
                           if stored.get(name) != current.get(name))
        if differing:
            raise TrainingError(f"{self.path} holds a run with other settings ({', '.join(differing)}); "
                                "retrain it with FORCE=1, or give another --runs-root")

    def training_lock(self):
        """Held by the writer while it trains: a second training of the same run is refused, also one that
        reaches the folder through a link, as the lock is the folder's the path leads to. The lock file lies
        beside the folder, which FORCE=1 deletes."""
        if not self.writer:
            return nullcontext()
        folder = self.path.resolve()
        folder.parent.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(folder.with_name(folder.name + ".lock"), f"training {self.path}")

    def remove_leftovers(self) -> int:
        """Delete what a killed run left half-written (temporary files of its atomic writes)."""
        return sum(files.remove_partials(self / name) for name in
                   (CONFIG_FILE, EXTRACTION_FILE, BEST_CHECKPOINT, LAST_CHECKPOINT, METRICS_FILE, CURVE_FILE,
                    EVAL_METRICS_FILE, EVAL_REPORT_FILE, CONFUSION_FILE))

    # --- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self, state: dict, name: str) -> None:
        """torch.save, with the state's checksum, through a temporary file, so an interruption leaves the
        previous file whole."""
        if self.writer:
            with files.atomic_path(self / name) as temporary:
                torch.save({**state, CHECKSUM_KEY: checkpoint_checksum(state)}, temporary)

    def load_checkpoint(self, name: str = BEST_CHECKPOINT) -> dict:
        """The checkpoint, its checksum checked; TrainingError naming the file and the fix when it is missing,
        unreadable or changed since it was written."""
        path = self / name
        if not path.is_file():
            if name == BEST_CHECKPOINT and (self / LAST_CHECKPOINT).is_file():
                raise self._lost_best()
            raise TrainingError(f"{path} not found: the run is not trained yet; run make train (same DATASET, "
                                "PARTITION and MODEL), or give --run-dir")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a damaged file; all mean the same here
            raise TrainingError(f"{path} cannot be read ({type(error).__name__}); it is damaged: "
                                f"{CHECKPOINT_FIXES[name]}") from None
        _check_checksum(checkpoint, path)
        return checkpoint

    def completed_epochs(self) -> int:
        """Epochs finished by the run (0 when it has no last.pt). Every last.pt is written after a best.pt,
        so one without it has lost its kept epoch: TrainingError, as the run can be neither finished nor scored."""
        if not (self / LAST_CHECKPOINT).is_file():
            return 0
        if not (self / BEST_CHECKPOINT).is_file():
            raise self._lost_best()
        return self.load_checkpoint(LAST_CHECKPOINT)["epoch"]

    def _lost_best(self) -> TrainingError:
        return TrainingError(f"{self / BEST_CHECKPOINT} is missing, while {LAST_CHECKPOINT} holds a trained run: the "
                             f"kept epoch's weights are gone; {CHECKPOINT_FIXES[BEST_CHECKPOINT]}")

    # --- log, metrics, curve ---------------------------------------------------------------------

    def log(self, message: str) -> None:
        """Print a line and append it, time-stamped, to train.log (writer processes only)."""
        if not self.writer:
            return
        print(message, flush=True)
        self.path.resolve().mkdir(parents=True, exist_ok=True)  # through a link, the folder it leads to
        files.append_text(self / LOG_FILE, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def write_metrics(self, history: list[dict]) -> None:
        if self.writer:
            files.write_csv(self / METRICS_FILE, METRIC_COLUMNS, history)

    def plot_curve(self, history: list[dict], best: dict) -> None:
        """Train and dev loss, and dev macro-F1, per epoch; the kept epoch marked."""
        if not self.writer:
            return
        epochs = [row["epoch"] for row in history]
        figure = Figure(figsize=(10, 4))
        FigureCanvasAgg(figure)
        loss_axes, f1_axes = figure.subplots(1, 2)
        loss_axes.plot(epochs, [row["train_loss"] for row in history], marker=".", label="train")
        loss_axes.plot(epochs, [row["dev_loss"] for row in history], marker=".", label="development")
        loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
        f1_axes.plot(epochs, [row["dev_macro_f1"] for row in history], marker=".", color="tab:green")
        f1_axes.set(xlabel="epoch", ylabel="macro-F1", title="development macro-F1", ylim=(0, 1))
        for axes in (loss_axes, f1_axes):
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.axvline(best["epoch"], color="grey", linestyle=":", label=f"kept (epoch {best['epoch']})")
            axes.grid(alpha=0.3)
        loss_axes.legend()
        figure.tight_layout()
        with files.atomic_path(self / CURVE_FILE) as temporary:
            figure.savefig(temporary, dpi=100, format="png")


def checkpoint_checksum(state: dict) -> str:
    """sha256 over all that a checkpoint holds but its checksum: every name, value and tensor's bytes, dicts in
    the order of their sorted keys."""
    digest = hashlib.sha256()
    _digest(digest, {name: value for name, value in state.items() if name != CHECKSUM_KEY})
    return digest.hexdigest()


def _digest(digest, value) -> None:
    if isinstance(value, torch.Tensor):
        digest.update(f"tensor {value.dtype} {tuple(value.shape)}:".encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)}:".encode())
        for key in sorted(value, key=repr):
            digest.update(f"{key!r}=".encode())
            _digest(digest, value[key])
    elif isinstance(value, (list, tuple)):  # the same items either way: the container is no part of the value
        digest.update(f"list {len(value)}:".encode())
        for item in value:
            _digest(digest, item)
    elif value is None or isinstance(value, (str, int, float)):
        digest.update(f"{type(value).__name__} {value!r};".encode())
    else:
        raise TypeError(f"a checkpoint value of type {type(value).__name__} has no checksum")


def _check_checksum(checkpoint, path: Path) -> None:
    fix = CHECKPOINT_FIXES[path.name]
    if not isinstance(checkpoint, dict):
        raise TrainingError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint of a run; {fix}")
    if CHECKSUM_KEY not in checkpoint:
        print(f"warning: {path} has no checksum (written before checkpoints carried one), so damage to it would "
              "go unnoticed; it is loaded unchecked", file=sys.stderr)
        return
    if checkpoint[CHECKSUM_KEY] != checkpoint_checksum(checkpoint):
        raise TrainingError(f"{path} does not match its checksum: it changed after it was written (a flipped bit, "
                            f"a damaged copy); {fix}")


@dataclass
class RunSelection:
    """Which run a stage reads: the options make train was given, or the folder itself."""

    dataset: str = option("demo", "corpus the run was trained on")
    partition: int = option(1, "partition the run was trained on, 1-5")
    model: str = option("auxformer", "variant the run trained")
    label_rule: str = option("", "label rule of the run; '' for the dataset's default")
    ratings: str = option("", "ratings of the run's labels; '' for the dataset's default")
    label_set: str = option("", "label set of the run (ravdess); '' for the dataset's default")
    partition_file: str = option("", "partition file of the run, if it was trained on one")
    runs_root: Path = option(Path("runs"), "where make train put the run")
    run_dir: str = option("", "the run folder itself, instead of the options above")

    def folder(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        return run_path(self.runs_root, self.dataset, split_name(self), self.model)


def split_name(config) -> str:
    """p<k> (with a non-default label rule or ratings appended), or file-<name> for a partition file."""
    selection = select(ManifestConfig(dataset=config.dataset, label_rule=config.label_rule, ratings=config.ratings,
                                      label_set=config.label_set, partition=config.partition,
                                      partition_file=config.partition_file),
                       check_corpus=False)
    return selection.split_name
