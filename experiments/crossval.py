"""Cross-validation: every model x partition x seed trained and scored as an ordinary run, then summed up.

A crossval named <name> lives in ``runs/<dataset>/crossval/<name>/``::

    crossval.yaml   the crossval's options
    runs/<split>/seed<s>/<model>/   one ordinary run folder per model, partition and seed
                    (make train's files, then make eval's metrics.json, report.md, confusion.png)
    results.csv, report.md, crossval.png   the summary (experiments.summary), written once every
                    run is scored

Each run is trained by training.stage and scored by inference.evaluation, exactly as make train
and make eval would, with the training options given (``--train-options``) on top of the
dataset's preset. A run already scored with the same settings is skipped, so a rerun does nothing
and a killed crossval resumes: an unfinished run goes on from its last.pt. Runs go in parallel,
``--jobs`` at a time, each a process that dies with the crossval; on a SLURM array every task
takes its share of the runs (the k-th of n takes runs k, k + n, ...), the same variables the
features stage reads, and whichever task finds every run scored writes the summary.
"""
from __future__ import annotations

import csv
import multiprocessing
import os
import re
import shlex
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from common.config import check_within, config_values, option, parse_config, save_config
from common.errors import ProjectError
from common.processes import die_with_parent
from experiments.summary import REPORT_FILE, RESULTS_FILE, write_summary
from inference.evaluation import evaluate_run
from model.variants import VARIANTS
from training.config import MAX_BATCH_SIZE
from training.run_folder import BEST_CHECKPOINT, CONFIG_FILE, EVAL_METRICS_FILE, RunFolder, comparable_options
from training.stage import TrainStageConfig, run_training

CROSSVAL_FILE = "crossval.yaml"
# A crossval's name is one folder name of these characters, so that it stays inside the runs folder.
FOLDER_CHARACTERS = "A-Za-z0-9.=_-"
FOLDER_NAME = f"[{FOLDER_CHARACTERS}]+"
# Training options the crossval sets for each run itself.
SET_PER_RUN = ("dataset", "model", "partition", "seed", "run_dir", "runs_root", "force")


class CrossvalError(ProjectError):
    """Options or runs the crossval cannot go on with; the message says what to do."""


@dataclass
class CrossvalConfig:
    dataset: str = option("demo", "corpus, as for make train")
    models: str = option("auxformer mult audio video", f"the variants to compare, the first one against each other "
                                                       f"(of {', '.join(VARIANTS)})")
    partitions: str = option("1-5", "speaker-independent partitions: a range (1-5) or a list (1,3)")
    seeds: int = option(3, "seeds per model and partition: 0 to SEEDS-1")
    train_options: str = option("", "make train options for every run, e.g. '--dropout-unit batch --epochs 10'")
    name: str = option("", "the crossval's folder name; '' for one made from --train-options ('default' without)")
    jobs: int = option(0, "runs trained at a time (0: one per 2 cores, at least 1)")
    eval_batch_size: int = option(64, "clips per batch when scoring the test split")
    runs_root: Path = option(Path("runs"), "crossvals go to <runs-root>/<dataset>/crossval/<name>/")

    def __post_init__(self) -> None:
        unknown = [model for model in self.model_list() if model not in VARIANTS]
        if unknown or not self.model_list():
            raise CrossvalError(f"--models {self.models!r}: choose among {', '.join(VARIANTS)}")
        if self.seeds < 1 or self.jobs < 0:
            raise CrossvalError("--seeds must be at least 1 and --jobs at least 0")
        check_within("eval_batch_size", self.eval_batch_size, 1, MAX_BATCH_SIZE, CrossvalError)
        name = self.name or default_name(self.train_options)
        if name in (".", "..") or not re.fullmatch(FOLDER_NAME, name):
            raise CrossvalError(f"--name {name!r}: a crossval's name is one folder name (letters, digits and . = _ -), "
                                "not a path; its folder is <runs-root>/<dataset>/crossval/<name>/")
        self.partition_list()
        given = {re.sub(r"=.*", "", word).lstrip("-").replace("-", "_") for word in shlex.split(self.train_options)
                 if word.startswith("--")}
        if given & set(SET_PER_RUN):
            raise CrossvalError(f"--train-options sets {', '.join(sorted(given & set(SET_PER_RUN)))}, which the "
                                "crossval sets for each run: use --dataset, --models, --partitions, --seeds")

    def model_list(self) -> list[str]:
        return self.models.replace(",", " ").split()

    def partition_list(self) -> list[int]:
        text = self.partitions.strip()
        try:
            if re.fullmatch(r"\d+-\d+", text):
                first, last = map(int, text.split("-"))
                partitions = list(range(first, last + 1))
            else:
                partitions = [int(part) for part in text.replace(",", " ").split()]
        except ValueError:
            partitions = []
        if not partitions or min(partitions) < 1 or max(partitions) > 5:
            raise CrossvalError(f"--partitions {self.partitions!r}: give a range such as 1-5 or a list such as 1,3 "
                                "(partitions 1 to 5)")
        return partitions

    def folder(self) -> Path:
        return Path(self.runs_root) / self.dataset / "crossval" / (self.name or default_name(self.train_options))

    def job_count(self) -> int:
        return self.jobs or max(1, (os.cpu_count() or 1) // 2)


def default_name(train_options: str) -> str:
    """A folder name that says what differs from the preset: the options' words joined."""
    words = [word.lstrip("-") for word in shlex.split(train_options)]
    return re.sub(f"[^{FOLDER_CHARACTERS}]+", "-", "_".join(words)) or "default"


@dataclass(frozen=True)
class RunTask:
    """One run of the crossval: its make train options, in full."""

    model: str
    partition: int
    seed: int
    argv: tuple[str, ...]

    def config(self) -> TrainStageConfig:
        return parse_config(TrainStageConfig, list(self.argv))

    def label(self) -> str:
        return f"{self.model} p{self.partition} seed {self.seed}"


def plan(config: CrossvalConfig) -> list[RunTask]:
    """Every run of the crossval, in a fixed order: partition, seed, then model."""
    extra = shlex.split(config.train_options)
    tasks = []
    for partition in config.partition_list():
        for seed in range(config.seeds):
            for model in config.model_list():
                argv = ["--dataset", config.dataset, "--model", model, "--partition", str(partition),
                        "--seed", str(seed), *extra]
                split = parse_config(TrainStageConfig, argv).run_folder().parent.name
                run_dir = config.folder() / "runs" / split / f"seed{seed}" / model
                tasks.append(RunTask(model, partition, seed, (*argv, "--run-dir", str(run_dir))))
    return tasks


def is_scored(task: RunTask) -> bool:
    """Whether the run is trained to its epochs (its last.pt says) with the task's settings, as a resume compares
    them, and scored since it last changed."""
    config = task.config()
    run = RunFolder(config.run_folder())
    scored, best = run / EVAL_METRICS_FILE, run / BEST_CHECKPOINT
    if not (scored.is_file() and best.is_file() and (run / CONFIG_FILE).is_file()):
        return False
    same = comparable_options(run.record().stage) == comparable_options(config_values(config))
    return same and scored.stat().st_mtime >= best.stat().st_mtime and run.completed_epochs() >= config.training.epochs


def my_share(tasks: Sequence[RunTask], environ=os.environ) -> list[RunTask]:
    """The runs of this SLURM array task (all of them outside an array)."""
    if "SLURM_ARRAY_TASK_COUNT" not in environ or "SLURM_ARRAY_TASK_ID" not in environ:
        return list(tasks)
    count = int(environ["SLURM_ARRAY_TASK_COUNT"])
    index = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    return list(tasks[index::count])


def _start_job(threads: int) -> None:
    die_with_parent()
    torch.set_num_threads(threads)
    # A spawned process would spawn its data loaders too, and they cannot take the open HDF5
    # files; forked ones share them, as they do under make train.
    multiprocessing.set_start_method("fork", force=True)


def train_and_score(task: RunTask, eval_batch_size: int) -> str:
    """Train (or resume) the run and score it; '' on success, else what went wrong (the error's message, or
    the traceback of a bug)."""
    try:
        config = task.config()
        run = run_training(config)
        device = config.training.device
        evaluate_run(run, eval_batch_size, device, {"batch_size": eval_batch_size, "device": device})
        return ""
    except ProjectError as error:
        return str(error)
    except Exception:  # noqa: BLE001 (one broken run must not stop the others; the traceback is kept)
        return traceback.format_exc()


@dataclass
class CrossvalOutcome:
    folder: Path
    runs: int  # in the whole crossval
    failed: dict[str, str]  # run label -> what went wrong
    summary_written: bool


def run_crossval(config: CrossvalConfig, environ=os.environ) -> CrossvalOutcome:
    """Train and score this process's share of the runs, then write the summary when every run is scored."""
    folder = config.folder()
    tasks = plan(config)  # which checks every run's training options, before anything is written
    _check_same_crossval(config, folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(config, folder / CROSSVAL_FILE)
    todo = [task for task in my_share(tasks, environ) if not is_scored(task)]
    print(f"crossval: {folder}: {len(tasks)} runs, {len(tasks) - len(todo)} of this share scored already, "
          f"{len(todo)} to train and score", flush=True)
    failed = {}
    if todo:
        jobs = min(config.job_count(), len(todo))
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_job,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(train_and_score, task, config.eval_batch_size): task for task in todo}
            started = time.monotonic()
            for done, future in enumerate(as_completed(futures), start=1):
                task, problem = futures[future], future.result()
                if problem:
                    failed[task.label()] = problem
                minutes = (time.monotonic() - started) / 60
                to_go = minutes / done * (len(todo) - done)
                print(f"crossval: [{done}/{len(todo)}, {minutes:.0f} min, about {to_go:.0f} min to go] {task.label()}: "
                      f"{'failed: ' + problem.strip().splitlines()[-1] if problem else 'scored'}", flush=True)
    unscored = [task for task in tasks if not is_scored(task)]
    if not unscored and not summary_is_current(folder, tasks):
        write_summary(folder, tasks, config)
    return CrossvalOutcome(folder, len(tasks), failed, summary_written=not unscored)


def _check_same_crossval(config: CrossvalConfig, folder: Path) -> None:
    """More models, partitions or seeds may join a crossval; other training options would mix runs."""
    if not (folder / CROSSVAL_FILE).is_file():
        return
    recorded = yaml.safe_load((folder / CROSSVAL_FILE).read_text()) or {}
    for name in ("dataset", "train_options"):
        if recorded.get(name) != getattr(config, name):
            raise CrossvalError(f"{folder} holds a crossval with --{name.replace('_', '-')} "
                                f"{recorded.get(name)!r}, not {getattr(config, name)!r}; give another --name")


def summary_is_current(folder: Path, tasks: Sequence[RunTask]) -> bool:
    """Whether the summary was written after every run's scores and for these runs."""
    report = folder / REPORT_FILE
    if not report.is_file() or not (folder / RESULTS_FILE).is_file():
        return False
    with (folder / RESULTS_FILE).open() as stream:
        summed = {row["run_dir"] for row in csv.DictReader(stream)}
    scores = [task.config().run_folder() / EVAL_METRICS_FILE for task in tasks]
    return (summed == {str(path.parent) for path in scores}
            and report.stat().st_mtime >= max(path.stat().st_mtime for path in scores))
