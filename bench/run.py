"""Benchmark of the pipeline on demo corpora (``make bench``).

Measures, on demo corpora of a few sizes (generated once into --work-dir and reused):

1. Extraction (``pipeline.features.extract``): clips/s and frames/s with 1 worker and with
   --workers, beside the decode-only floor (``pipeline.decode_floor.decode_clip``) over the
   same clips with the same worker count, the ratio of the two, the time by part and the peak
   resident memory of the main process and of its largest worker.
2. Training (``pipeline.train.run``, --epochs on each size): training clips/s, seconds per
   epoch, the share of the epoch spent waiting for data, peak memory; evaluation
   (``pipeline.evaluate.run``) clips/s and peak memory.
3. Prediction (``pipeline.predict``) of the demo clip nearest 2.5 s: cold (a new process that
   loads the model) and warm (model loaded), as a fraction of the clip's duration.
4. Scaling: each figure against clip count (the --actors sizes) and clip length (demo clips
   joined end to end, the same frames in fewer, longer clips); least-squares fits of seconds on
   clips and frames; projections of full CREMA-D and MSP-IMPROV on 2 CPU cores, and on one GPU
   machine from a run with --device cuda.
5. GPU (--device cuda): the GPU's name, its utilisation (nvidia-smi about every 200 ms) during
   extraction and training, peak GPU memory.

Every measurement runs in a fresh child process, so that its peak memory is its own (peak
resident memory is a high-water mark over a process's life). Timers are the standard library's.
Writes bench/results/<date>-<host>.json (every figure, the machine, this config) and .md (the
tables, each aim met or missed and by how much); a --device cuda run adds -cuda to the names.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import option, parse_config, to_yaml
from pipeline.train import TrainStageConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECTION_CORES = 2
PREDICT_CLIP_SECONDS = 2.5
GPU_SAMPLE_MS = 200
EXTRACTION_PARTS = ("decode", "audio", "detect", "crop", "embed", "mel", "write")
PART_NAMES = {"decode": "video decode", "audio": "audio read", "detect": "face detection", "crop": "crop",
              "embed": "embedding", "mel": "log-mel", "write": "HDF5 write"}
# Parts the decode-only floor does too; the others are what extraction adds.
FLOOR_PARTS = ("decode", "audio")


@dataclass(frozen=True)
class Aims:
    extraction_over_floor: float = 2.0  # full extraction time / decode-only time, on CPU
    data_wait_share: float = 0.10  # share of training step time spent waiting for data
    warm_prediction_real_time: float = 1.0  # warm latency / clip duration, on 2 CPU cores


AIMS = Aims()


@dataclass(frozen=True)
class FullCorpus:
    """A corpus the figures are projected to."""

    name: str
    clips: int
    frames: int  # 0: unknown, projected from the demo's mean clip length
    frames_source: str
    split_shares: dict  # share of clips in train, development, test
    split_source: str


CREMA_D = FullCorpus("CREMA-D", 7442, 590_000, "the issue's figure: about 79 frames per clip at 30 fps",
                     {"train": 63 / 91, "development": 14 / 91, "test": 14 / 91},
                     "63/14/14 of 91 actors (the published partitions, corpora.partitions)")
MSP_IMPROV = FullCorpus("MSP-IMPROV", 8438, 0, "", {"train": 4 / 6, "development": 1 / 6, "test": 1 / 6},
                        "4/1/1 of 6 sessions (corpora.msp_improv; sessions taken as equal in size)")


@dataclass
class BenchConfig:
    actors: str = option("3,4,6", "demo corpus sizes in actors, comma-separated (3 is the fewest a partition "
                                  "takes); three or more sizes for the scaling fits")
    # IEO alone: 16 clips per actor (each further sentence adds 6), which keeps training, the
    # slowest part on CPU, to about 3 minutes over the three default sizes on 2 cores.
    sentences: int = option(1, "sentences per actor, 1-12 (IEO alone gives 16 clips per actor, each further "
                               "sentence 6 more)")
    seed: int = option(0, "seed of the demo corpora")
    length_clips: int = option(16, "demo clips joined end to end for the clip-length series (0: no series)")
    length_factors: str = option("1,2,4", "clip-length series: demo clips per joined clip, comma-separated")
    workers: int = option(os.cpu_count() or 1, "the all-cores worker count, measured beside 1 worker")
    device: str = option("auto", "auto (cuda when available), cpu or cuda, for every stage")
    epochs: int = option(1, "training epochs per size (the last epoch is reported)")
    batch_size: int = option(TrainStageConfig.batch_size, "training clips per batch (make train's default)")
    audio_pool: int = option(TrainStageConfig.audio_pool, "training --audio-pool (make train's default)")
    video_pool: int = option(TrainStageConfig.video_pool, "training --video-pool (make train's default)")
    num_workers: int = option(TrainStageConfig.num_workers, "training data loading processes (make train's default)")
    cold_runs: int = option(3, "cold predictions (a new process each); the median is reported")
    warm_runs: int = option(5, "warm predictions after one untimed call; the median is reported")
    improv_frames: int = option(0, "MSP-IMPROV video frames for the projection (0: its clips times the demo's "
                                   "mean clip length, as no sourced figure is at hand)")
    work_dir: Path = option(Path("bench/scratch"), "demo corpora are kept here for the next run; each run's "
                                                   "features, manifests and training runs go below it")
    keep_work: bool = option(False, "keep this run's features, manifests and training runs")
    results_dir: Path = option(Path("bench/results"), "where <date>-<host>.json and .md are written")


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def parse_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


# ---------------------------------------------------------------------------------------------
# Measurements. Each runs in a child process (measure_in_child), reads a JSON spec and returns a
# dict of figures, to which the child's peak memory is added.


def _gpu_peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def measure_extraction(spec: dict) -> dict:
    from pipeline.features import FeaturesConfig, extract, load_jobs

    config = FeaturesConfig(dataset=spec["dataset"], corpus_dir=spec["corpus"], out_root=Path(spec["out_root"]),
                            manifests_dir=Path(spec["manifests"]), workers=spec["workers"], device=spec["device"])
    load_jobs(config)  # builds the manifest outside the timed run, as the floor's is
    folder, report = extract(config)
    return {"clips": report.clips, "failed": len(report.failures), "frames": report.frames,
            "face_frames": report.face_frames, "seconds": report.wall, "parts": dict(report.seconds),
            "features": folder.name, "gpu_peak_mb": _gpu_peak_mb(spec["device"])}


def measure_floor(spec: dict) -> dict:
    """Decode every clip as make features-floor does (pipeline.decode_floor), timed without the manifest."""
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.decode_floor import decode_clip
    from pipeline.features import FeaturesConfig, load_jobs

    jobs = load_jobs(FeaturesConfig(dataset=spec["dataset"], corpus_dir=spec["corpus"],
                                    manifests_dir=Path(spec["manifests"])))
    started = time.perf_counter()
    with ProcessPoolExecutor(spec["workers"]) as pool:
        frames = sum(pool.map(decode_clip, jobs, chunksize=4))
    return {"clips": len(jobs), "frames": frames, "seconds": time.perf_counter() - started}


def measure_training(spec: dict) -> dict:
    """make train on one size (cwd is the size's folder, where make train builds its manifest)."""
    from corpora.manifest import load_manifest
    from model.training import METRICS_FILE
    from pipeline.manifest import build_manifest
    from pipeline.train import run

    stage = TrainStageConfig(**{**spec["stage"], "runs_root": Path(spec["stage"]["runs_root"])})
    run_dir = run(stage)
    with open(run_dir / METRICS_FILE, newline="") as stream:
        epochs = [{name: float(value) for name, value in row.items()} for row in csv.DictReader(stream)]
    manifest = load_manifest(build_manifest(stage.manifest_config())[0])
    last = epochs[-1]
    train_clips = len(manifest.in_split("train"))
    train_seconds = train_clips / last["train_clips_per_second"]
    return {"run_dir": str(run_dir.resolve()), "train_clips": train_clips,
            "dev_clips": len(manifest.in_split("development")), "test_clips": len(manifest.in_split("test")),
            "epoch_seconds": last["seconds"], "train_seconds": train_seconds,
            "dev_seconds": max(last["seconds"] - train_seconds, 0.0),
            "train_clips_per_second": last["train_clips_per_second"], "data_wait_share": last["data_wait_share"],
            "epochs": epochs, "gpu_peak_mb": _gpu_peak_mb(spec["device"])}


def measure_evaluation(spec: dict) -> dict:
    """make eval (all of it: three conditions, metrics.json, report.md, confusion.png)."""
    from pipeline.evaluate import EvalConfig, run

    started = time.perf_counter()
    _, metrics = run(EvalConfig(run_dir=spec["run_dir"], device=spec["device"]))
    seconds = time.perf_counter() - started
    return {"clips": metrics["clips"], "conditions": len(metrics["results"]), "seconds": seconds,
            "clips_per_second": metrics["clips"] / seconds, "gpu_peak_mb": _gpu_peak_mb(spec["device"])}


def measure_warm_prediction(spec: dict) -> dict:
    """Latency of Predictor.predict with the model loaded, and where a call's time goes."""
    from pipeline.predict import Predictor

    started = time.perf_counter()
    predictor = Predictor(Path(spec["run_dir"]), spec["device"])
    load_seconds = time.perf_counter() - started
    path = Path(spec["clip"])
    latencies, parts = [], []
    with predictor.extraction.open_detector() as detector:
        first = predictor.predict(path, detector)  # untimed: the first call pays one-off initialisation
        if first.error:
            raise BenchError(f"prediction failed: {first.error}")
        for _ in range(spec["runs"]):
            tick = time.perf_counter()
            predictor.predict(path, detector)
            latencies.append(time.perf_counter() - tick)
        for _ in range(spec["runs"]):
            parts.append(prediction_parts(predictor, path, detector))
    median = statistics.median(latencies)
    by_part = {name: statistics.median(run[name] for run in parts) for name in parts[0]}
    by_part["other (by difference)"] = max(median - sum(by_part.values()), 0.0)
    return {"load_seconds": load_seconds, "latencies": latencies, "median": median, "parts": by_part,
            "emotion": first.emotion, "gpu_peak_mb": _gpu_peak_mb(spec["device"])}


def prediction_parts(predictor, path: Path, detector) -> dict[str, float]:
    """The steps of Predictor.predict, each timed: worker-side media, embedding and log-mel, the model."""
    import torch

    from extract.clip_media import ClipJob, process_clip
    from model.data import model_inputs

    media = process_clip(ClipJob(path.stem, None, path), detector, predictor.extraction.track)
    tick = time.perf_counter()
    features = predictor.extraction.features(media)
    embedded = time.perf_counter() - tick
    audio, video = model_inputs(features)
    tick = time.perf_counter()
    with torch.inference_mode():
        outputs = predictor.model(audio[None].to(predictor.device), torch.tensor([len(audio)]),
                                  video[None].to(predictor.device), torch.tensor([len(video)]))
        outputs[0].cpu()  # waits for the GPU
    return {**{PART_NAMES.get(name, name): seconds for name, seconds in media.seconds.items()},
            "embedding and log-mel": embedded, "model": time.perf_counter() - tick}


MEASUREMENTS = {"extraction": measure_extraction, "floor": measure_floor, "training": measure_training,
                "evaluation": measure_evaluation, "warm_prediction": measure_warm_prediction}
CHILD_CODE = "import sys; from bench.run import measure_in_child; sys.exit(measure_in_child(sys.argv[1], sys.argv[2]))"


def measure_in_child(kind: str, spec_json: str) -> int:
    """Entry point of a child process: run one measurement, write its figures to spec['result']."""
    from pipeline.features import peak_memory_mb

    spec = json.loads(spec_json)
    figures = MEASUREMENTS[kind](spec)
    main_mb, child_mb = peak_memory_mb()  # the child's processes are all reaped by now
    figures["peak_mb"] = {"main": round(main_mb), "largest_child": round(child_mb)}
    Path(spec["result"]).write_text(json.dumps(figures))
    return 0


# ---------------------------------------------------------------------------------------------
# Running children, sampling the GPU.


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH", "")] if p])
    return env


class GpuSampler:
    """GPU utilisation while a measurement runs (when enabled): nvidia-smi asked every GPU_SAMPLE_MS.

    One short nvidia-smi call per sample rather than its own loop (-lms), whose output, buffered
    in a pipe, is lost when it is stopped.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        # The GPU torch calls cuda:0; CUDA_VISIBLE_DEVICES names it by nvidia-smi's index (or UUID).
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        self.command = ["nvidia-smi", "-i", gpu, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                done = subprocess.run(self.command, capture_output=True, text=True, timeout=5)
                self.samples += parse_utilisation(done.stdout)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._stop.wait(GPU_SAMPLE_MS / 1000)

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        return {"mean": round(statistics.fmean(self.samples), 1), "max": max(self.samples),
                "samples": len(self.samples), "every_ms": GPU_SAMPLE_MS}


def parse_utilisation(output: str) -> list[float]:
    """nvidia-smi's lines of percentages; anything else (a warning, [N/A]) is skipped."""
    samples = []
    for line in output.splitlines():
        try:
            samples.append(float(line.strip()))
        except ValueError:
            continue
    return samples


class Runner:
    """Runs measurements in child processes, their output logged to <run-dir>/logs/<name>.log."""

    def __init__(self, run_dir: Path, device: str):
        self.run_dir, self.device = run_dir, device
        self.logs = run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def measure(self, kind: str, name: str, spec: dict, cwd: Path = REPO_ROOT, sample_gpu: bool = False) -> dict:
        result = self.run_dir / "results" / f"{name}.json"
        result.parent.mkdir(exist_ok=True)
        spec = {**spec, "device": self.device, "result": str(result)}
        with GpuSampler(sample_gpu and self.device == "cuda") as sampler:
            self._run([sys.executable, "-c", CHILD_CODE, kind, json.dumps(spec)], name, cwd)
        figures = json.loads(result.read_text())
        figures["gpu_utilisation"] = sampler.summary()
        return figures

    def time_command(self, command: list[str], name: str, cwd: Path = REPO_ROOT) -> float:
        """Wall seconds of a command run to completion, process start included."""
        started = time.perf_counter()
        self._run(command, name, cwd)
        return time.perf_counter() - started

    def _run(self, command: list[str], name: str, cwd: Path) -> None:
        log = self.logs / f"{name}.log"
        with log.open("w") as stream:
            done = subprocess.run(command, cwd=cwd, env=child_env(), stdout=stream, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise BenchError(f"{name} failed (exit status {done.returncode}); the end of {log}:\n{tail}")


# ---------------------------------------------------------------------------------------------
# Corpora.


def demo_corpus(work_dir: Path, actors: int, sentences: int, seed: int, workers: int) -> tuple[Path, dict]:
    """A demo corpus under work_dir/corpora, generated unless a finished one is there."""
    from corpora.demo.generate import DemoConfig, generate

    out = work_dir / "corpora" / f"demo-a{actors}-s{sentences}-seed{seed}"
    report = generate(DemoConfig(out_dir=out, actors=actors, sentences=sentences, seed=seed, workers=workers))
    return out, {"label": f"a{actors}", "actors": actors, "sentences": sentences, "clips": report.clips,
                 "generated_seconds": None if report.skipped else round(report.elapsed_seconds, 1)}


def join_clips(sources: Sequence[tuple[Path, Path]], video_out: Path, audio_out: Path) -> int:
    """One clip made of demo clips (FLV video, WAV sound) one after another; returns its frames."""
    import av
    import soundfile

    from corpora.demo import media

    frames, sounds = [], []
    for video, audio in sources:
        with av.open(str(video)) as container:
            frames += [frame.to_ndarray(format="yuv420p") for frame in container.decode(video=0)]
        sounds.append(soundfile.read(audio, dtype="float32")[0])
    samples = np.concatenate(sounds)
    media.write_wav(audio_out, samples)
    return media.write_flv(video_out, frames, samples)


def length_series(corpus: Path, clips: int, factors: Sequence[int], work_dir: Path) -> dict[int, Path]:
    """Folders of the corpus's first ``clips`` clips joined ``factor`` at a time: the same frames, longer clips.

    Plain folders of videos with a WAV beside each (the folder dataset), so extraction reads the
    audio from a WAV as it does for the demo corpus.
    """
    from corpora import crema_d

    videos = sorted((corpus / crema_d.VIDEO_DIR).glob("*.flv"))[:clips]
    pairs = [(video, corpus / crema_d.AUDIO_DIR / f"{video.stem}.wav") for video in videos]
    folders = {}
    for factor in factors:
        folder = work_dir / "corpora" / f"joined-{corpus.name}-n{clips}" / f"x{factor}"
        done = folder / ".done"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for start in range(0, len(pairs) - factor + 1, factor):
                name = f"joined{start // factor:03d}"
                join_clips(pairs[start:start + factor], folder / f"{name}.flv", folder / f"{name}.wav")
            done.touch()
        folders[factor] = folder
    return folders


def clip_nearest(features: Path, corpus: Path, seconds: float) -> tuple[str, Path, float]:
    """The corpus clip whose duration (index.csv's frames over the video's frame rate) is nearest ``seconds``."""
    from corpora import crema_d
    from extract.face_track import video_fps

    with open(features / "index.csv", newline="") as stream:
        frames = {row["clip_id"]: int(row["video_frames"]) for row in csv.DictReader(stream)}
    clip_id = min(sorted(frames), key=lambda c: abs(frames[c] / crema_d.VIDEO_FPS - seconds))
    path = corpus / crema_d.VIDEO_DIR / f"{clip_id}.flv"
    return clip_id, path, frames[clip_id] / video_fps(path)


# ---------------------------------------------------------------------------------------------
# The benchmark.


def worker_counts(workers: int) -> list[int]:
    return sorted({1, max(workers, 1)})


def run_extractions(runner: Runner, dataset: str, corpus: Path, folder: Path, series: str, label: str,
                    counts: Sequence[int]) -> Iterator[dict]:
    """Full extraction and decode floor of one corpus, for each worker count."""
    base = {"dataset": dataset, "corpus": str(corpus.resolve()), "manifests": str(folder / "data" / "manifests")}
    for workers in counts:
        spec = {**base, "workers": workers, "out_root": str(folder / f"features-w{workers}")}
        full = runner.measure("extraction", f"extract-{label}-w{workers}", spec, sample_gpu=True)
        floor = runner.measure("floor", f"floor-{label}-w{workers}", spec)
        record = {"series": series, "label": label, "workers": workers, "full": full, "floor": floor}
        print(f"bench: extraction {label}, {workers} worker(s): {full['clips']} clips, {full['frames']} frames in "
              f"{full['seconds']:.1f} s, floor {floor['seconds']:.1f} s", flush=True)
        yield record


def measure_all(config: BenchConfig, device: str, work_dir: Path, run_dir: Path) -> dict:
    """Every measurement; work_dir and run_dir are absolute, as children run in other folders."""
    runner = Runner(run_dir, device)
    actors, factors = parse_list(config.actors), parse_list(config.length_factors)
    counts = worker_counts(config.workers)
    raw: dict = {"corpora": [], "extraction": [], "training": [], "prediction": None}
    trained, corpora = None, {}
    for n_actors in actors:
        corpus, corpus_record = demo_corpus(work_dir, n_actors, config.sentences, config.seed, config.workers)
        corpora[n_actors] = corpus
        raw["corpora"].append(corpus_record)
        label = corpus_record["label"]
        folder = run_dir / label
        records = list(run_extractions(runner, "demo", corpus, folder, "count", label, counts))
        raw["extraction"] += records
        # Train on the all-cores extraction (the features do not depend on the worker count).
        features = folder / f"features-w{counts[-1]}" / "demo" / records[-1]["full"]["features"]
        raw["training"].append(train_and_evaluate(runner, config, corpus, features, folder, label))
        trained = (corpus, features, raw["training"][-1]["training"]["run_dir"])
    if config.length_clips and factors:
        for factor, corpus in length_series(corpora[min(actors)], config.length_clips, factors, work_dir).items():
            raw["extraction"] += run_extractions(runner, "folder", corpus, run_dir / f"x{factor}", "length",
                                                 f"x{factor}", counts[-1:])
    raw["prediction"] = measure_prediction(runner, config, *trained)
    return raw


def train_and_evaluate(runner: Runner, config: BenchConfig, corpus: Path, features: Path, folder: Path,
                       label: str) -> dict:
    stage = {"dataset": "demo", "corpus_dir": str(corpus.resolve()), "features_dir": str(features),
             "runs_root": str(folder / "runs"), "epochs": config.epochs, "batch_size": config.batch_size,
             "audio_pool": config.audio_pool, "video_pool": config.video_pool, "num_workers": config.num_workers,
             "device": runner.device}
    # make train builds its manifest under data/manifests of the working directory: the size's own folder.
    training = runner.measure("training", f"train-{label}", {"stage": stage}, cwd=folder, sample_gpu=True)
    evaluation = runner.measure("evaluation", f"eval-{label}", {"run_dir": training["run_dir"]})
    print(f"bench: training {label}: {training['train_clips']} clips, {training['epoch_seconds']:.1f} s per epoch, "
          f"{training['data_wait_share']:.1%} waiting for data; evaluation {evaluation['seconds']:.1f} s", flush=True)
    return {"label": label, "training": training, "evaluation": evaluation}


def measure_prediction(runner: Runner, config: BenchConfig, corpus: Path, features: Path, run_dir: str) -> dict:
    clip_id, path, duration = clip_nearest(features, corpus, PREDICT_CLIP_SECONDS)
    out_dir = runner.run_dir / "predictions"
    command = [sys.executable, "-m", "pipeline.predict", "--video", str(path), "--run-dir", run_dir,
               "--out-dir", str(out_dir), "--device", runner.device]
    cold = [runner.time_command(command, f"predict-cold-{i}") for i in range(config.cold_runs)]
    warm = runner.measure("warm_prediction", "predict-warm", {"run_dir": run_dir, "clip": str(path),
                                                                 "runs": config.warm_runs})
    print(f"bench: prediction of {clip_id} ({duration:.2f} s): cold {statistics.median(cold):.1f} s, "
          f"warm {warm['median']:.2f} s", flush=True)
    return {"clip": clip_id, "duration": duration, "cold_seconds": cold, "cold_median": statistics.median(cold),
            "warm": warm}


# ---------------------------------------------------------------------------------------------
# Fits, projections, aims: pure functions of the measured figures.


@dataclass(frozen=True)
class CostFit:
    """seconds = fixed + per_clip * clips + per_frame * frames, fitted by non-negative least squares."""

    fixed: float
    per_clip: float
    per_frame: float
    terms: tuple[str, ...]
    points: int
    max_relative_residual: float

    def seconds(self, clips: float, frames: float = 0.0) -> float:
        return self.fixed + self.per_clip * clips + self.per_frame * frames


def fit_costs(points: Sequence[tuple[float, float, float]], terms: Sequence[str]) -> CostFit | None:
    """Fit (clips, frames, seconds) points with the given terms ("fixed", "clip", "frame").

    Non-negative, as no part of the work can take negative time; None when there are fewer
    points than terms. Columns are scaled to 1 before the fit for a well-conditioned problem.
    """
    from scipy.optimize import nnls

    if len(points) < len(terms):
        return None
    columns = {"fixed": [1.0] * len(points), "clip": [p[0] for p in points], "frame": [p[1] for p in points]}
    design = np.array([columns[term] for term in terms], dtype=float).T
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    seconds = np.array([p[2] for p in points], dtype=float)
    solution, _ = nnls(design / scale, seconds)
    coefficients = dict(zip(terms, solution / scale))
    predicted = design @ (solution / scale)
    residual = float(np.max(np.abs(predicted - seconds) / np.maximum(seconds, 1e-9)))
    return CostFit(coefficients.get("fixed", 0.0), coefficients.get("clip", 0.0), coefficients.get("frame", 0.0),
                   tuple(terms), len(points), residual)


def _varies(values: Sequence[float]) -> bool:
    """By over 20%: enough to tell two costs apart in a noisy measurement."""
    values = [v for v in values if v > 0]
    return bool(values) and max(values) > 1.2 * min(values)


def extraction_terms(points: Sequence[tuple[float, float, float]]) -> tuple[str, ...]:
    """Per-clip and per-frame costs can only be told apart when the clip length varies."""
    return ("fixed", "clip", "frame") if _varies([frames / clips for clips, frames, _ in points if clips]) \
        else ("fixed", "frame")


def clip_terms(points: Sequence[tuple[float, float, float]]) -> tuple[str, ...]:
    """A fixed cost can only be told apart from the per-clip one when the clip count varies; otherwise
    the fit is proportional, the fixed costs folded into the per-clip one (an upper bound)."""
    return ("fixed", "clip") if _varies([clips for clips, _, _ in points]) else ("clip",)


def extraction_fits(records: Sequence[dict]) -> dict:
    """Per worker count, fits of the full extraction and of the floor over every series."""
    fits = {}
    for workers in sorted({r["workers"] for r in records}):
        chosen = [r for r in records if r["workers"] == workers]
        for kind in ("full", "floor"):
            points = [(r[kind]["clips"], r[kind]["frames"], r[kind]["seconds"]) for r in chosen]
            fit = fit_costs(points, extraction_terms(points))
            fits[f"{kind}-w{workers}"] = dataclasses.asdict(fit) if fit else None
    return fits


def training_fits(records: Sequence[dict]) -> dict:
    """Training, development scoring and evaluation seconds against their clips (length does not vary)."""
    series = {"train": [(r["training"]["train_clips"], 0, r["training"]["train_seconds"]) for r in records],
              "development": [(r["training"]["dev_clips"], 0, r["training"]["dev_seconds"]) for r in records],
              "evaluation": [(r["evaluation"]["clips"], 0, r["evaluation"]["seconds"]) for r in records]}
    return {name: _as_dict(fit_costs(points, clip_terms(points))) for name, points in series.items()}


def _as_dict(fit: CostFit | None) -> dict | None:
    return dataclasses.asdict(fit) if fit else None


def _fit(data: dict | None) -> CostFit | None:
    return CostFit(**{**data, "terms": tuple(data["terms"])}) if data else None


def mean_frames_per_clip(records: Sequence[dict]) -> float:
    counted = [r["full"] for r in records if r["series"] == "count"]
    return sum(r["frames"] for r in counted) / max(sum(r["clips"] for r in counted), 1)


def corpus_frames(corpus: FullCorpus, frames_per_clip: float, improv_frames: int) -> tuple[int, str]:
    """The frames assumed for a full corpus, and where the figure comes from."""
    if corpus.frames:
        return corpus.frames, corpus.frames_source
    if corpus is MSP_IMPROV and improv_frames:
        return improv_frames, "given with --improv-frames"
    return (round(corpus.clips * frames_per_clip),
            f"no sourced figure: {corpus.clips:,} clips x the demo's mean {frames_per_clip:.0f} frames per clip")


def project(fits: dict, training: dict, corpus: FullCorpus, frames: int, workers: int, scale: float,
            rate: float | None = None) -> dict:
    """Projected seconds of each stage on a full corpus, times ``scale`` (measured cores / target cores).

    ``rate``: frames/s of the largest extraction, a cross-check of the fit that needs no fit.
    """
    extraction = _fit(fits.get(f"full-w{workers}"))
    floor = _fit(fits.get(f"floor-w{workers}"))
    shares = corpus.split_shares
    train, dev, evaluation = (_fit(training.get(name)) for name in ("train", "development", "evaluation"))

    def scaled(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * scale

    epoch = (train.seconds(corpus.clips * shares["train"]) + dev.seconds(corpus.clips * shares["development"])
             if train and dev else None)
    return {"extraction": scaled(extraction.seconds(corpus.clips, frames) if extraction else None),
            "extraction_at_rate": scaled(frames / rate) if rate else None,
            "decode_floor": scaled(floor.seconds(corpus.clips, frames) if floor else None),
            "training_epoch": scaled(epoch),
            "evaluation": scaled(evaluation.seconds(corpus.clips * shares["test"]) if evaluation else None)}


def projections(results: dict) -> dict:
    """CREMA-D and MSP-IMPROV on 2 CPU cores (from a CPU run) and on one GPU machine (from a CUDA run)."""
    machine, config = results["machine"], results["config"]
    frames_per_clip = mean_frames_per_clip(results["extraction"])
    workers = max(worker_counts(config["workers"]))
    on_cpu = machine["device"] == "cpu"
    # Linear in cores: the measured all-cores figures, times (cores here / 2).
    scale = machine["cpu_count"] / PROJECTION_CORES
    record = largest(results["extraction"], workers=workers)
    rate = record["full"]["frames"] / record["full"]["seconds"] if record else None
    out = {"cpu_scale": scale, "corpora": []}
    for corpus in (CREMA_D, MSP_IMPROV):
        frames, source = corpus_frames(corpus, frames_per_clip, config["improv_frames"])
        figures = project(results["fits"]["extraction"], results["fits"]["training"], corpus, frames, workers,
                          scale if on_cpu else 1.0, rate)
        out["corpora"].append({"name": corpus.name, "clips": corpus.clips, "frames": frames, "frames_source": source,
                               "split_source": corpus.split_source,
                               "cpu_2_cores": figures if on_cpu else None, "gpu_machine": None if on_cpu else figures})
    return out


def largest(records: Sequence[dict], series: str = "count", workers: int | None = None) -> dict | None:
    chosen = [r for r in records if r["series"] == series and (workers is None or r["workers"] == workers)]
    return max(chosen, key=lambda r: (r["full"]["frames"], r["workers"]), default=None)


def extraction_bound(record: dict, cpu_count: int) -> str:
    """What the time beyond the floor goes to: the two largest parts the floor does not do."""
    parts, frames = record["full"]["parts"], max(record["full"]["frames"], 1)
    total = sum(parts.values()) or 1.0
    extra = sorted((p for p in parts if p not in FLOOR_PARTS), key=lambda p: -parts[p])[:2]
    named = " and ".join(f"{PART_NAMES.get(p, p)} ({1000 * parts[p] / frames:.2f} ms/frame, "
                         f"{parts[p] / total:.0%} of process time)" for p in extra)
    decode = sum(parts.get(p, 0.0) for p in FLOOR_PARTS)
    text = (f"bounded by {named}; decoding itself is {1000 * decode / frames:.2f} ms/frame "
            f"({decode / total:.0%}) in the full run")
    if record["workers"] >= cpu_count:
        # The floor has no main-process work; extraction embeds in the main process beside the workers.
        text += (f"; the main process (embedding, log-mel, writing) shares the {cpu_count} cores with the "
                 f"{record['workers']} workers")
    return text


def ratio_verdict(measured: float, aim: float) -> str:
    return f"met ({measured:.2f}x, aim at most {aim:.2f}x)" if measured <= aim else \
        f"missed by {measured / aim:.2f}x ({measured:.2f}x against at most {aim:.2f}x)"


def share_verdict(measured: float, aim: float) -> str:
    return f"met ({measured:.1%}, aim under {aim:.0%})" if measured < aim else \
        f"missed by {100 * (measured - aim):.1f} percentage points ({measured:.1%} against under {aim:.0%})"


def extraction_aims(results: dict, where: str) -> list[dict]:
    """One row per worker count, on the largest corpus of the count series."""
    rows = []
    for workers in worker_counts(results["config"]["workers"]):
        record = largest(results["extraction"], workers=workers)
        if not record:
            continue
        ratio = record["full"]["seconds"] / record["floor"]["seconds"]
        met = ratio <= AIMS.extraction_over_floor
        verdict = ratio_verdict(ratio, AIMS.extraction_over_floor)
        if not met:
            verdict += "; " + extraction_bound(record, results["machine"]["cpu_count"])
        rows.append({"aim": f"extraction at most {AIMS.extraction_over_floor:.1f}x the decode-only floor on CPU",
                     "where": f"{record['label']}, {workers} worker(s), {where}", "met": met, "verdict": verdict})
    return rows


def training_aim(results: dict, where: str) -> list[dict]:
    if not results["training"]:
        return []
    training = max(results["training"], key=lambda r: r["training"]["train_clips"])["training"]
    wait = training["data_wait_share"]
    met = wait < AIMS.data_wait_share
    verdict = share_verdict(wait, AIMS.data_wait_share) + (
        "; the training step itself bounds throughput" if met else
        f"; bounded by data loading (HDF5 reads and batching in {results['config']['num_workers']} loader processes)")
    return [{"aim": f"training data wait under {AIMS.data_wait_share:.0%} of step time",
             "where": f"{training['train_clips']} training clips, {where}", "met": met, "verdict": verdict}]


def prediction_aim(results: dict, where: str) -> list[dict]:
    prediction, machine = results["prediction"], results["machine"]
    if not prediction:
        return []
    real_time = prediction["warm"]["median"] / prediction["duration"]
    met = real_time < AIMS.warm_prediction_real_time
    verdict = (f"met ({real_time:.2f}x the clip's duration)" if met else
               f"missed by {real_time / AIMS.warm_prediction_real_time:.2f}x ({real_time:.2f}x the clip's "
               f"duration); bounded by {_largest_part(prediction['warm']['parts'])}")
    if machine["cpu_count"] != PROJECTION_CORES or machine["device"] != "cpu":
        verdict += f" (measured on {where}, not 2 CPU cores)"
    return [{"aim": "warm prediction faster than real time on 2 CPU cores",
             "where": f"{prediction['clip']}, {prediction['duration']:.2f} s, {where}", "met": met,
             "verdict": verdict}]


def gpu_aim(results: dict) -> list[dict]:
    gpu = results["gpu"]
    return [{"aim": "on GPU, the extraction workers keep the embedding step busy", "where": gpu["name"] or "no GPU",
             "met": None, "verdict": _gpu_verdict(gpu) if gpu["name"] else "not measured: no GPU run"}]


def aims(results: dict) -> list[dict]:
    machine = results["machine"]
    where = f"{machine['cpu_count']} cores, {machine['device']}"
    return (extraction_aims(results, where) + training_aim(results, where) + prediction_aim(results, where)
            + gpu_aim(results))


def _largest_part(parts: dict) -> str:
    name = max(parts, key=parts.get)
    return f"{name} ({parts[name]:.2f} s of the call)"


def _gpu_verdict(gpu: dict) -> str:
    during = gpu.get("extraction_utilisation")
    if not during:
        return "utilisation not sampled (nvidia-smi not found)"
    return (f"reported: GPU busy {during['mean']:.0f}% of the time on average (max {during['max']:.0f}%) "
            "during extraction")


def gpu_summary(raw: dict, gpu_name: str | None) -> dict:
    extraction = largest(raw["extraction"], workers=max(r["workers"] for r in raw["extraction"])) \
        if raw["extraction"] else None
    training = raw["training"][-1]["training"] if raw["training"] else None
    return {"name": gpu_name,
            "extraction_utilisation": extraction["full"]["gpu_utilisation"] if extraction else None,
            "training_utilisation": training["gpu_utilisation"] if training else None}


def summarise(raw: dict, machine: dict, config: dict) -> dict:
    """The results: the measured figures, the fits, the projections and the aims."""
    results = {"date": machine["date"], "machine": machine, "config": config, **raw,
               "gpu": gpu_summary(raw, machine["gpu"])}
    results["fits"] = {"extraction": extraction_fits(raw["extraction"]), "training": training_fits(raw["training"])}
    results["projection"] = projections(results)
    results["aims"] = aims(results)
    return results


# ---------------------------------------------------------------------------------------------
# The markdown report.


def table(header: Sequence[str], rows: Sequence[Sequence], text_columns: int = 1) -> list[str]:
    """A markdown table; the first ``text_columns`` columns left-aligned, the figures right-aligned."""
    text_columns = min(text_columns, len(header))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * text_columns + "---:|" * (len(header) - text_columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def _mb(peak: dict) -> str:
    return f"{peak['main']} / {peak['largest_child']}"


def _util(summary: dict | None) -> str:
    return f"{summary['mean']:.0f}% (max {summary['max']:.0f}%)" if summary else "-"


def extraction_section(results: dict) -> list[str]:
    rows = []
    for r in results["extraction"]:
        full, floor = r["full"], r["floor"]
        rows.append([f"{r['label']} ({r['series']})", r["workers"], full["clips"], full["frames"],
                     f"{full['frames'] / max(full['clips'], 1) / 30:.2f}", f"{full['seconds']:.1f}",
                     f"{full['clips'] / full['seconds']:.2f}", f"{full['frames'] / full['seconds']:.0f}",
                     f"{floor['frames'] / floor['seconds']:.0f}", f"{full['seconds'] / floor['seconds']:.2f}x",
                     _mb(full["peak_mb"]), _mb(floor["peak_mb"]), _util(full["gpu_utilisation"])])
    lines = ["## 1. Extraction", "",
             "Full extraction (`pipeline.features.extract`) against the decode-only floor (the same clips, the "
             "same worker count, `pipeline.decode_floor.decode_clip`). Ratio = full seconds / floor seconds "
             f"(aim: at most {AIMS.extraction_over_floor:.1f}x on CPU). Peak memory is resident MB of the main "
             "process / its largest worker; mean clip length assumes 30 fps.", ""]
    lines += table(["corpus", "workers", "clips", "frames", "mean clip (s)", "seconds", "clips/s", "frames/s",
                    "floor frames/s", "full/floor", "peak MB full", "peak MB floor", "GPU busy"], rows)
    for workers in worker_counts(results["config"]["workers"]):
        record = largest(results["extraction"], workers=workers)
        if not record:
            continue
        parts, frames = record["full"]["parts"], max(record["full"]["frames"], 1)
        total = sum(parts.values()) or 1.0
        lines += [f"Time by part, {record['label']} with {workers} worker(s) (seconds summed over processes; "
                  f"the run took {record['full']['seconds']:.1f} s of wall time):", ""]
        lines += table(["part", "seconds", "share", "ms per frame"],
                       [[PART_NAMES.get(p, p), f"{parts[p]:.1f}", f"{parts[p] / total:.0%}",
                         f"{1000 * parts[p] / frames:.2f}"] for p in EXTRACTION_PARTS if p in parts])
    return lines


def training_section(results: dict) -> list[str]:
    rows, eval_rows = [], []
    for r in results["training"]:
        t, e = r["training"], r["evaluation"]
        rows.append([r["label"], t["train_clips"], t["dev_clips"], f"{t['epoch_seconds']:.1f}",
                     f"{t['train_seconds']:.1f}", f"{t['train_clips_per_second']:.2f}", f"{t['data_wait_share']:.1%}",
                     _mb(t["peak_mb"]), _gpu_mb(t), _util(t["gpu_utilisation"])])
        eval_rows.append([r["label"], e["clips"], e["conditions"], f"{e['seconds']:.1f}",
                          f"{e['clips_per_second']:.2f}", _mb(e["peak_mb"]), _gpu_mb(e)])
    config = results["config"]
    lines = ["## 2. Training and evaluation", "",
             f"`pipeline.train.run`, {config['epochs']} epoch(s), batch {config['batch_size']}, audio pool "
             f"{config['audio_pool']}, video pool {config['video_pool']}, {config['num_workers']} loader processes; "
             "the last epoch's figures from metrics.csv. An epoch is training plus scoring the development split. "
             f"Data wait = share of the training pass spent waiting for the next batch (aim: under "
             f"{AIMS.data_wait_share:.0%}). Peak MB: main process / largest loader process.", ""]
    lines += table(["corpus", "train clips", "dev clips", "s per epoch", "s training", "train clips/s",
                    "data wait", "peak MB", "peak GPU MB", "GPU busy"], rows)
    lines += ["Evaluation (`pipeline.evaluate.run` as a whole: each condition scored, report and confusion "
              "plot written):", ""]
    lines += table(["corpus", "test clips", "conditions", "seconds", "clips/s", "peak MB", "peak GPU MB"], eval_rows)
    return lines


def _gpu_mb(figures: dict) -> str:
    return "-" if figures.get("gpu_peak_mb") is None else f"{figures['gpu_peak_mb']:.0f}"


def prediction_section(results: dict) -> list[str]:
    p = results["prediction"]
    if not p:
        return []
    warm, clip_seconds = p["warm"], p["duration"]
    cold = ", ".join(f"{s:.1f}" for s in p["cold_seconds"])
    lines = ["## 3. Prediction", "",
             f"Clip `{p['clip']}`, {clip_seconds:.2f} s. Cold: `python -m pipeline.predict` in a new process "
             f"(start, model load, prediction, output files). Warm: `Predictor.predict` with the model loaded, "
             f"after one untimed call (aim: faster than real time, under 1.0x the clip's duration).", ""]
    lines += table(["latency", "seconds", "x clip duration", "runs"], [
        ["cold (median)", f"{p['cold_median']:.2f}", f"{p['cold_median'] / clip_seconds:.2f}x", cold],
        ["warm (median)", f"{warm['median']:.3f}", f"{warm['median'] / clip_seconds:.2f}x",
         ", ".join(f"{s:.3f}" for s in warm["latencies"])]])
    lines += [f"Model load (in the warm process): {warm['load_seconds']:.2f} s; peak memory "
              f"{warm['peak_mb']['main']} MB. A warm call's time by part:", ""]
    lines += table(["part", "seconds", "share of the median call"],
                   [[name, f"{s:.3f}", f"{s / warm['median']:.0%}"] for name, s in warm["parts"].items()])
    return lines


def _fit_row(name: str, fit: dict | None) -> list:
    if not fit:
        return [name, "too few sizes", "", "", "", ""]
    fixed = f"{fit['fixed']:.2f}" if "fixed" in fit["terms"] else "- (folded in)"
    per_clip = f"{1000 * fit['per_clip']:.1f}" if "clip" in fit["terms"] else "-"
    per_frame = f"{1000 * fit['per_frame']:.2f}" if "frame" in fit["terms"] else "-"
    return [name, fixed, per_clip, per_frame, fit["points"], f"{fit['max_relative_residual']:.0%}"]


def scaling_section(results: dict) -> list[str]:
    lines = ["## 4. Scaling and projection", "",
             "How the figures grow: the tables above list every size; the `count` series grows the number of "
             "demo clips (actors), the `length` series joins the same demo clips into fewer, longer ones "
             "(the same frames). Fits by non-negative least squares: seconds = fixed + per clip x clips + "
             "per frame x frames. Per clip and per frame are told apart only when the clip length varies; "
             "training and evaluation are fitted against their clips, at the demo's clip length, with no fixed "
             "part when their clip count did not vary (the development and test splits are one actor at every "
             "size up to 9 actors), which makes the per-clip cost an upper bound. Max residual: the largest "
             "misfit of a measured point, a measure of the noise.", ""]
    rows = [_fit_row(f"extraction, {name.split('-w')[1]} worker(s)" if name.startswith("full") else
                     f"decode floor, {name.split('-w')[1]} worker(s)", fit)
            for name, fit in results["fits"]["extraction"].items()]
    rows += [_fit_row({"train": "training pass", "development": "development scoring",
                       "evaluation": "evaluation"}[name], fit) for name, fit in results["fits"]["training"].items()]
    lines += table(["stage", "fixed s", "ms per clip", "ms per frame", "points", "max residual"], rows)
    projection = results["projection"]
    lines += [f"Projection to the full corpora, from the fits of the all-cores runs. The 2-core column scales "
              f"this machine's figures linearly by its cores / 2 (x{projection['cpu_scale']:.2f}); the GPU column "
              f"comes only from a `--device cuda` run.", ""]
    rows = []
    for corpus in projection["corpora"]:
        for stage, name in (("extraction", "extraction (fit)"),
                            ("extraction_at_rate", "extraction (at the largest run's frames/s)"),
                            ("decode_floor", "decode-only floor (fit)"),
                            ("training_epoch", "one training epoch"), ("evaluation", "evaluation (test split)")):
            cpu = corpus["cpu_2_cores"][stage] if corpus["cpu_2_cores"] else None
            gpu = corpus["gpu_machine"][stage] if corpus["gpu_machine"] else None
            rows.append([corpus["name"], name, duration(cpu) if corpus["cpu_2_cores"] else "not a CPU run",
                         duration(gpu) if corpus["gpu_machine"] else "no GPU run"])
    lines += table(["corpus", "stage", "2 CPU cores", "one GPU machine"], rows, text_columns=2)
    for corpus in projection["corpora"]:
        lines.append(f"- {corpus['name']}: {corpus['clips']:,} clips, {corpus['frames']:,} frames "
                     f"({corpus['frames_source']}); splits {corpus['split_source']}.")
    lines += ["- Training and evaluation are projected per clip at the demo's clip length; longer clips "
              "cost more (attention grows with the square of the steps).", ""]
    return lines


def gpu_section(results: dict) -> list[str]:
    gpu = results["gpu"]
    if not gpu["name"]:
        return ["## 5. GPU", "", "No GPU run: run `make bench ARGS=\"--device cuda\"` on a machine with one.", ""]
    return ["## 5. GPU", "", f"{gpu['name']}, {results['date']}. Utilisation sampled by nvidia-smi about every "
            f"{GPU_SAMPLE_MS} ms.", ""] + table(["stage", "GPU busy (mean, max)"], [
        ["extraction (largest, all workers)", _util(gpu["extraction_utilisation"])],
        ["training (largest size)", _util(gpu["training_utilisation"])]])


def render_markdown(results: dict) -> str:
    machine = results["machine"]
    rerun = f"make bench ARGS=\"{results['command']}\"" if results["command"] else "make bench"
    busy = (": other work shared the machine, so the figures are slower and noisier than on a quiet one"
            if max(machine["load_before"], machine["load_after"]) > machine["cpu_count"] else "")
    lines = [f"# Benchmark, {machine['hostname']}, {results['date']}", "",
             f"{machine['cpu_count']} CPU cores ({machine['cpu_model']}), {machine['ram_gb']:.0f} GB RAM, "
             f"torch {machine['torch']} ({machine.get('torch_threads', '?')} threads), device {machine['device']}"
             f"{', ' + machine['gpu'] if machine['gpu'] else ''}; commit {machine['commit'] or 'unknown'}. "
             f"Load average {machine['load_before']:.1f} before, {machine['load_after']:.1f} after{busy}. "
             f"The benchmark took {duration(results['wall_seconds'])}.",
             "", f"Run with `{rerun}`.", "", "## Aims", ""]
    lines += table(["aim", "measured on", "verdict"],
                   [[a["aim"], a["where"], a["verdict"]] for a in results["aims"]], text_columns=3)
    for section in (extraction_section, training_section, prediction_section, scaling_section, gpu_section):
        lines += section(results)
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# Machine, results files, main.


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info(device: str) -> dict:
    import torch

    return {"hostname": socket.gethostname(), "date": time.strftime("%Y-%m-%d"),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_count": os.cpu_count() or 1,
            "cpu_model": _cpu_model(), "ram_gb": round(_ram_gb(), 1), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": device,
            # Thread settings change CPU timings a great deal on a shared machine.
            "thread_env": {name: os.environ[name] for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
                           if name in os.environ},
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
            "commit": _commit(), "load_before": os.getloadavg()[0]}


def resolve_device(name: str) -> str:
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise BenchError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda, but torch sees no CUDA device")
    return name


def validate(config: BenchConfig) -> None:
    actors, factors = parse_list(config.actors), parse_list(config.length_factors)
    if not actors or min(actors) < 3:
        raise BenchError(f"--actors needs sizes of at least 3 actors (a partition needs 3), got {config.actors!r}")
    if not 1 <= config.sentences <= 12:
        raise BenchError(f"--sentences must be 1-12, got {config.sentences}")
    if factors and (min(factors) < 1 or config.length_clips < max(factors)):
        raise BenchError("--length-factors must be at least 1 and --length-clips at least the largest factor")
    if config.epochs < 1 or config.cold_runs < 1 or config.warm_runs < 1 or config.workers < 1:
        raise BenchError("--epochs, --cold-runs, --warm-runs and --workers must be at least 1")


def results_name(machine: dict) -> str:
    suffix = "-cuda" if machine["device"] == "cuda" else ""
    return f"{machine['date']}-{machine['hostname']}{suffix}"


def write_results(results: dict, results_dir: Path) -> tuple[Path, Path, str]:
    results_dir.mkdir(parents=True, exist_ok=True)
    name = results_name(results["machine"])
    markdown = render_markdown(results)
    json_path, md_path = results_dir / f"{name}.json", results_dir / f"{name}.md"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path, markdown


def command_line(argv: Sequence[str] | None) -> str:
    return " ".join(argv if argv is not None else sys.argv[1:])


def _public(raw: dict) -> dict:
    """The figures without this machine's scratch paths."""
    for record in raw["training"]:
        record["training"].pop("run_dir", None)
    return raw


def main(argv: list[str] | None = None) -> int:
    config = parse_config(BenchConfig, argv, description=__doc__)
    started = time.monotonic()
    try:
        validate(config)
        device = resolve_device(config.device)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    machine = machine_info(device)
    work_dir = config.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{time.strftime('%Y%m%d-%H%M%S')}-", dir=work_dir))
    print(f"bench: {machine['cpu_count']} cores, device {device}; scratch in {run_dir}", flush=True)
    try:
        raw = measure_all(config, device, work_dir, run_dir)
    except BenchError as error:
        print(f"bench: {error}\nbench: this run's files are kept in {run_dir}", file=sys.stderr)
        return 1
    machine["load_after"] = os.getloadavg()[0]
    results = summarise(_public(raw), machine, _config_values(config))
    results["command"] = command_line(argv)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    json_path, md_path, markdown = write_results(results, config.results_dir)
    if not config.keep_work:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(markdown)
    print(f"bench: {json_path}, {md_path} ({duration(results['wall_seconds'])})")
    return 0


def _config_values(config: BenchConfig) -> dict:
    import yaml

    return yaml.safe_load(to_yaml(config))


if __name__ == "__main__":
    sys.exit(main())
