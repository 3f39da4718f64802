"""GPU check: every CUDA path of the pipeline, on a small demo corpus (``make gpu-check``).

The one prepared script to run the day a GPU machine is lent. Without a CUDA device it prints
one line saying why it skips and exits 0, reading and writing nothing. With one, it reads the
code and the pinned model files and writes, in --work-dir (bench/scratch/gpu-check by default,
ignored by git): the demo corpus (corpus/), an extraction made on the CPU and one made on CUDA
(features-cpu/, features-cuda/), the corpus manifest (manifests/), a training run (runs/), a
prediction (predictions/), the output of each step (logs/<check>.log) and gpu-check.log, a copy
of everything it printed. The benchmark writes bench/results/<date>-<host>-cuda.md and .json as
``make bench ARGS="--device cuda"`` does, and gpu-check.log is copied to
bench/results/<date>-gpu-check-<gpu>.txt, to be committed with them.

One line per check, ``gpu-check: <check>: ok|FAILED (<details>) [<seconds>]``:

1. environment: torch and its CUDA version, the driver, the GPUs, a trivial kernel on cuda:0;
2. corpus: a demo corpus of 3 actors and 1 sentence (48 clips);
3. features-cpu, features-cuda, features-match: the corpus extracted on each device, and every
   clip compared: log-mels within 1e-3 dB, face embeddings within 1e-4 (the measured maxima are
   reported either way), face boxes and validity masks equal;
4. training: 3 epochs under torchrun, one process per visible GPU, on the CUDA features;
5. evaluation and 6. prediction (one demo clip) with the trained run, on CUDA;
7. benchmark: a short ``bench.run --device cuda``.

A failed check does not stop the others (a check that needs a failed one's output says so);
the exit status is 1 when any check failed, else 0. The whole run is sized to finish in under 8
minutes on one GPU; the end says how long it took.
"""
from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.runner import REPO_ROOT, child_env
from common.cli import run_stage
from common.config import option
from common.paths import record_path
from corpora import crema_d
from corpora.demo.generate import DemoConfig, generate
from extract.engine import FeaturesConfig, extract
from extract.shards import ClipFeatures, FeatureStore
from pipeline.evaluate import main as evaluate_main
from pipeline.predict import main as predict_main
from training.run_folder import EVAL_METRICS_FILE, LOG_FILE, METRICS_FILE

NAME = "gpu-check"
# The device the checks exercise. A name here rather than "cuda" written into each check, so that
# the checks' plumbing can be tried on a CPU machine by setting it to "cpu".
GPU = "cuda"
SKIP_LINE = (f"{NAME}: skipped: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine "
             "(make gpu-check)")
LOG_NAME = "gpu-check.log"
# The two extraction checks, and the folders below the work folder they extract into.
CPU_FEATURES, GPU_FEATURES = "features-cpu", "features-cuda"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
BUDGET_SECONDS = 8 * 60

# 3 actors is the fewest a partition takes (train, development, test); IEO alone gives 16 clips each.
DEMO_ACTORS, DEMO_SENTENCES = 3, 1
DEMO_CLIPS = 48
TRAIN_EPOCHS = 3
# Log-mels: float32 FFTs on either device, on values of tens of dB. Embeddings: the tolerance
# tests/extract/test_face_encoders.py states for the FER port (LOGIT_TOLERANCE); the encoders
# turn TF32 off on CUDA so that the GPU's features match the CPU's to it.
MEL_TOLERANCE_DB = 1e-3
EMBEDDING_TOLERANCE = 1e-4
# CUDA 13, which the locked torch wheel is built with, dropped GPUs older than Turing (README,
# "Running on GPUs and clusters").
MIN_CAPABILITY = (7, 5)
# Time limits of the two subprocesses, so that a hung one cannot eat a lent machine's time.
TRAIN_TIMEOUT = 240
BENCH_TIMEOUT = 330
BENCH_ARGS = ("--actors", "3,4", "--length-clips", "4", "--length-factors", "1,2",
              "--cold-runs", "1", "--warm-runs", "2")


@dataclass
class GpuCheckConfig:
    work_dir: Path = option(Path("bench/scratch/gpu-check"), "where the corpus, features, run and logs go "
                                                             "(a rerun reuses the corpus and redoes the rest)")
    seed: int = option(0, "seed of the demo corpus and of the training run")


class CheckFailed(Exception):
    """A check ran and found something wrong; the message is the detail its line shows."""


@dataclass
class Workspace:
    """The work folder's layout, and what the checks found that later checks need."""

    root: Path
    seed: int
    gpus: int = 0
    gpu_name: str = ""
    extractions: dict[str, Path] = field(default_factory=dict)  # check name: the extraction folder it made
    run_dir: Path | None = None

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    def log(self, check: str) -> Path:
        return self.root / "logs" / f"{check}.log"


class Log:
    """Prints each line and appends it to gpu-check.log at once, so a killed run keeps what it printed."""

    def __init__(self, path: Path):
        self.path = path
        path.write_text("")

    def line(self, text: str) -> None:
        print(text, flush=True)
        with self.path.open("a") as stream:
            stream.write(text + "\n")


# --- helpers ------------------------------------------------------------------------------------------

def one_line(text: str, limit: int = 400) -> str:
    """A message fit for a check's single line."""
    text = " | ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def tail(log: Path, lines: int = 3) -> str:
    """The last lines of a step's log, and where the rest is."""
    try:
        text = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        text = []
    return f"{' | '.join(text[-lines:]) or 'no output'} (all of it in {record_path(log)})"


def slug(text: str) -> str:
    """A GPU's name as part of a file name: ``NVIDIA H200`` -> ``nvidia-h200``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown-gpu"


def _logged(function: Callable, log: Path, *args):
    """``function(*args)`` with its prints and progress bars going to ``log`` instead of the console."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        return function(*args)


def in_fresh_process(function: Callable, *args):
    """``function(*args)`` in a spawned process. This process has initialised CUDA (the environment
    check did), and a process that has must not fork; the demo generator and the CPU extraction
    fork their workers, so they run in a process of their own that has not."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def run_logged(command: list[str], log: Path, cwd: Path, timeout: float) -> None:
    """Run a command with its output in ``log``; CheckFailed on a non-zero exit or past ``timeout``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stream:
        # Its own process group, so that a timeout stops torchrun's workers with it.
        process = subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=stream, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise CheckFailed(f"still running after {timeout} s, stopped; {tail(log)}") from None
    if status != 0:
        raise CheckFailed(f"exit status {status}; {tail(log)}")


def call_main(main: Callable[[list[str]], int], argv: list[str], log: Path) -> None:
    """A stage's main in this process, its output in ``log``; CheckFailed on a non-zero status."""
    status = _logged(main, log, argv)
    if status != 0:
        raise CheckFailed(f"exit status {status}; {tail(log)}")


# --- the checks ---------------------------------------------------------------------------------------

def driver_version() -> str:
    """The NVIDIA driver's version from nvidia-smi; else the CUDA version the driver supports, from torch."""
    if shutil.which("nvidia-smi"):
        try:
            done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30, check=True)
            return done.stdout.splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    supported = getattr(torch._C, "_cuda_getDriverVersion", None)  # not public API: used only if there
    if supported is None:
        return "unknown (no nvidia-smi)"
    version = supported()
    return f"unknown (no nvidia-smi; it supports CUDA {version // 1000}.{version % 1000 // 10})"


def check_environment(ws: Workspace) -> str:
    ws.gpus = torch.cuda.device_count()
    gpus = []
    for index in range(ws.gpus):
        properties = torch.cuda.get_device_properties(index)
        gpus.append(f"cuda:{index} {properties.name} (compute {properties.major}.{properties.minor}, "
                    f"{properties.total_memory / 2**30:.0f} GiB)")
    ws.gpu_name = torch.cuda.get_device_name(0)
    detail = (f"torch {torch.__version__}, CUDA {torch.version.cuda}, driver {driver_version()}, {ws.gpus} GPU(s): "
              f"{'; '.join(gpus)}; {os.cpu_count()} CPU cores")
    capability = torch.cuda.get_device_capability(0)
    if capability < MIN_CAPABILITY:
        raise CheckFailed(f"{detail}; compute capability {capability[0]}.{capability[1]} is below the "
                          f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} the CUDA 13 build of torch needs")
    # A wheel built without this GPU's architecture fails on its first kernel: better here than in
    # the middle of an extraction.
    if (torch.arange(4, device="cuda") * 2).sum().item() != 12:
        raise CheckFailed(f"{detail}; a trivial kernel on cuda:0 gave a wrong sum")
    return detail


def make_corpus(ws: Workspace) -> str:
    config = DemoConfig(out_dir=ws.corpus, actors=DEMO_ACTORS, sentences=DEMO_SENTENCES, seed=ws.seed,
                        workers=os.cpu_count() or 1)
    report = in_fresh_process(_logged, generate, ws.log("corpus"), config)
    if report.clips != DEMO_CLIPS:
        raise CheckFailed(f"{report.clips} clips, expected {DEMO_CLIPS}")
    how = "already there" if report.skipped else f"{report.written} written"
    return f"{report.clips} clips ({how}) in {record_path(ws.corpus)}"


def extract_on(folder_name: str, on_gpu: bool) -> Callable[[Workspace], str]:
    """The check that extracts the corpus into <work-dir>/<folder_name>/, on the GPU or the CPU."""
    def check(ws: Workspace) -> str:
        device = GPU if on_gpu else "cpu"
        # force: a rerun would otherwise find every clip done and run no CUDA code at all.
        config = FeaturesConfig(dataset="demo", corpus_dir=str(ws.corpus), out_root=ws.root / folder_name,
                                device=device, force=True)
        folder, report = in_fresh_process(_logged, extract, ws.log(folder_name), config)
        ws.extractions[folder_name] = folder
        faces = report.face_frames / max(report.steps, 1)
        detail = (f"{report.clips} clips, {report.frames} frames, face in {faces:.1%} of {report.steps} video steps, "
                  f"{report.frames / max(report.wall, 1e-9):.0f} frames/s on {report.device}")
        if report.failures or report.clips != DEMO_CLIPS:
            raise CheckFailed(f"{detail}; {len(report.failures)} clips failed (expected {DEMO_CLIPS} extracted); "
                              f"{tail(ws.log(folder_name))}")
        return detail
    return check


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference of two arrays of one shape (0 for empty ones; inf for other shapes)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def clip_differences(cpu: ClipFeatures, cuda: ClipFeatures) -> tuple[float, float, bool]:
    """(log-mel max difference, embedding max difference, face track equal) of one clip's two extractions.
    The face track (boxes, validity) is found on the CPU workers either way, so it must be identical."""
    same_track = (np.array_equal(cpu.boxes, cuda.boxes, equal_nan=True) and np.array_equal(cpu.valid, cuda.valid))
    return max_difference(cpu.audio, cuda.audio), max_difference(cpu.embedding, cuda.embedding), same_track


def compare_features(ws: Workspace) -> str:
    with FeatureStore(ws.extractions[CPU_FEATURES]) as cpu, FeatureStore(ws.extractions[GPU_FEATURES]) as cuda:
        cpu_ids, cuda_ids = set(cpu.clip_ids()), set(cuda.clip_ids())
        if cpu_ids != cuda_ids:
            raise CheckFailed(f"the extractions hold other clips: {len(cpu_ids - cuda_ids)} only on CPU, "
                              f"{len(cuda_ids - cpu_ids)} only on CUDA")
        mel, embedding, other_tracks = 0.0, 0.0, []
        for clip_id in sorted(cpu_ids):
            clip_mel, clip_embedding, same_track = clip_differences(cpu.load(clip_id), cuda.load(clip_id))
            mel, embedding = max(mel, clip_mel), max(embedding, clip_embedding)
            if not same_track:
                other_tracks.append(clip_id)
    detail = (f"{len(cpu_ids)} clips; max |cpu - cuda|: log-mel {mel:.2e} dB (limit {MEL_TOLERANCE_DB:.0e}), "
              f"face embedding {embedding:.2e} (limit {EMBEDDING_TOLERANCE:.0e}); face boxes and masks equal in "
              f"{len(cpu_ids) - len(other_tracks)} of {len(cpu_ids)} clips")
    if other_tracks:
        detail += f" (e.g. {other_tracks[0]})"
    if mel > MEL_TOLERANCE_DB or embedding > EMBEDDING_TOLERANCE or other_tracks:
        raise CheckFailed(detail)
    return detail


def train(ws: Workspace) -> str:
    processes = max(1, torch.cuda.device_count())  # one per visible GPU
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "pipeline.train", "--dataset", "demo", "--corpus-dir", str(ws.corpus),
               "--features-root", str(ws.root / GPU_FEATURES), "--manifests-dir", str(ws.manifests),
               "--runs-root", str(ws.runs), "--device", GPU, "--epochs", str(TRAIN_EPOCHS), "--preset", "none",
               "--num-workers", "2", "--seed", str(ws.seed), "--force"]
    # In the work folder, so that whatever a stage writes relative to where it runs lands there too.
    run_logged(command, ws.log("training"), cwd=ws.root, timeout=TRAIN_TIMEOUT)
    logs = sorted(ws.runs.glob(f"demo/*/*/{LOG_FILE}"))
    if len(logs) != 1:
        raise CheckFailed(f"expected one run folder with a {LOG_FILE} under {record_path(ws.runs)}, found {len(logs)}")
    ws.run_dir = logs[0].parent
    if processes > 1 and f"in {processes} processes" not in logs[0].read_text():
        raise CheckFailed(f"{logs[0]} does not say it trained in {processes} processes")
    with (ws.run_dir / METRICS_FILE).open(newline="") as stream:
        epochs = list(csv.DictReader(stream))
    if len(epochs) != TRAIN_EPOCHS:
        raise CheckFailed(f"{METRICS_FILE} has {len(epochs)} epochs, expected {TRAIN_EPOCHS}")
    last = epochs[-1]
    return (f"{TRAIN_EPOCHS} epochs in {processes} process(es), last: train loss {float(last['train_loss']):.3f}, "
            f"dev macro-F1 {float(last['dev_macro_f1']):.3f}; run {record_path(ws.run_dir)}")


def evaluate(ws: Workspace) -> str:
    call_main(evaluate_main, ["--run-dir", str(ws.run_dir), "--device", GPU], ws.log("evaluation"))
    metrics = json.loads((ws.run_dir / EVAL_METRICS_FILE).read_text())
    condition, by_head = next(iter(metrics["results"].items()))
    f1 = by_head[metrics["predicting_head"]]["f1_macro"]
    return f"{metrics['clips']} test clips, macro-F1 {f1:.3f} ({condition}, {metrics['predicting_head']})"


def predict(ws: Workspace) -> str:
    video = sorted((ws.corpus / crema_d.VIDEO_DIR).glob("*.flv"))[0]
    call_main(predict_main, ["--run-dir", str(ws.run_dir), "--video", str(video), "--device", GPU,
                             "--out-dir", str(ws.predictions)], ws.log("prediction"))
    (prediction,) = json.loads((ws.predictions / f"{video.stem}.json").read_text())["predictions"]
    if prediction["error"] or not prediction["emotion"]:
        raise CheckFailed(f"{video.name}: {prediction['error'] or 'no emotion predicted'}")
    return (f"{video.name}: {prediction['emotion']} ({prediction['probabilities'][prediction['emotion']]:.2f}) "
            f"from {prediction['modalities']}")


def benchmark(ws: Workspace) -> str:
    started = time.time() - 1  # file times are compared with it: a second of slack for coarse clocks
    # From the repository root, so that the results go to its default place, bench/results/.
    run_logged([sys.executable, "-m", "bench.run", "--device", GPU, *BENCH_ARGS], ws.log("benchmark"), cwd=REPO_ROOT,
               timeout=BENCH_TIMEOUT)
    written = sorted(path for path in RESULTS_DIR.glob("*") if path.suffix in (".md", ".json")
                     and path.stat().st_mtime >= started)
    if not written:
        raise CheckFailed(f"bench.run exited 0 but wrote nothing to {record_path(RESULTS_DIR)}")
    return "wrote " + ", ".join(record_path(path) for path in written)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Workspace], str]  # returns the detail of its line; raises when something is wrong
    needs: tuple[str, ...] = ()  # checks whose output it reads


CHECKS = (
    Check("environment", check_environment),
    Check("corpus", make_corpus),
    Check(CPU_FEATURES, extract_on(CPU_FEATURES, on_gpu=False), ("corpus",)),
    Check(GPU_FEATURES, extract_on(GPU_FEATURES, on_gpu=True), ("corpus",)),
    Check("features-match", compare_features, (CPU_FEATURES, GPU_FEATURES)),
    Check("training", train, (GPU_FEATURES,)),
    Check("evaluation", evaluate, ("training",)),
    Check("prediction", predict, ("training",)),
    Check("benchmark", benchmark),  # makes its own corpora
)


def run_check(check: Check, ws: Workspace, passed: dict[str, bool], log: Log) -> bool:
    """Run one check and print its line; any exception is that check's failure, not the run's."""
    missing = [name for name in check.needs if not passed.get(name)]
    if missing:
        log.line(f"{NAME}: {check.name}: FAILED (not run: needs {', '.join(missing)}) [0.0 s]")
        return False
    started = time.monotonic()
    try:
        detail, ok = check.run(ws), True
    except CheckFailed as failure:
        detail, ok = str(failure), False
    except (Exception, SystemExit) as error:  # SystemExit: a stage's argument parser, called in-process
        # The traceback goes to the check's log; the line keeps the error itself.
        _append(ws.log(check.name), traceback.format_exc())
        detail, ok = f"{type(error).__name__}: {error}; traceback in {record_path(ws.log(check.name))}", False
    seconds = time.monotonic() - started
    log.line(f"{NAME}: {check.name}: {'ok' if ok else 'FAILED'} ({one_line(detail)}) [{seconds:.1f} s]")
    return ok


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as stream:
        stream.write(text)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def run_checks(config: GpuCheckConfig) -> int:
    started = time.monotonic()
    ws = Workspace(root=config.work_dir.resolve(), seed=config.seed)
    ws.root.mkdir(parents=True, exist_ok=True)
    log = Log(ws.root / LOG_NAME)
    log.line(f"{NAME}: {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}, work folder "
             f"{record_path(ws.root)}")
    passed: dict[str, bool] = {}
    for check in CHECKS:
        passed[check.name] = run_check(check, ws, passed, log)
    failed = [name for name, ok in passed.items() if not ok]
    total = time.monotonic() - started
    budget = "within" if total <= BUDGET_SECONDS else "over"
    failures = f", failed: {', '.join(failed)}" if failed else ""
    log.line(f"{NAME}: total: {len(passed) - len(failed)} of {len(passed)} checks ok{failures}; {minutes(total)} "
             f"({budget} the {BUDGET_SECONDS // 60}-minute budget)")
    copy = RESULTS_DIR / f"{time.strftime('%Y-%m-%d')}-gpu-check-{slug(ws.gpu_name)}.txt"
    log.line(f"{NAME}: log {record_path(log.path)}, copied to {record_path(copy)}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log.path, copy)
    return 1 if failed else 0


def gpu_check(config: GpuCheckConfig) -> int:
    # Checked before anything is created: without CUDA there is nothing to check.
    if not torch.cuda.is_available():
        print(SKIP_LINE)
        return 0
    return run_checks(config)


def main(argv: list[str] | None = None) -> int:
    return run_stage(NAME, GpuCheckConfig, gpu_check, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
