"""The measurements themselves: the code that runs inside a child process (bench.runner's
measure_in_child). Each ``measure_*`` function reads a JSON spec, runs one stage of the pipeline
(extraction, the decode-only floor, training, evaluation, warm prediction, a long recording's
segments) and returns a dict of
its figures; ``MEASUREMENTS`` names them for the child's command line.
"""
from __future__ import annotations

import csv
import functools
import statistics
import time
from pathlib import Path

from bench.report import PART_NAMES
from bench.runner import BenchError


def _gpu_peak_mb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def measure_extraction(spec: dict) -> dict:
    """make features with the default options, or with the extraction options in spec["extraction"]."""
    from common.config import from_values
    from extract.engine import FeaturesConfig, extract
    from extract.spec import ExtractionSpec

    config = FeaturesConfig(spec=from_values(ExtractionSpec, spec.get("extraction", {})), dataset=spec["dataset"],
                            corpus_dir=spec["corpus"], out_root=Path(spec["out_root"]), workers=spec["workers"],
                            device=spec["device"])
    folder, report = extract(config)
    return {"clips": report.clips, "failed": len(report.failures), "frames": report.frames, "steps": report.steps,
            "face_frames": report.face_frames, "seconds": report.wall, "parts": dict(report.seconds),
            "worker_peak_mb": report.worker_peak_mb,
            "features": folder.name, "face_rate": config.spec.face_rate,
            "embed_in": embed_place(config, spec["device"]),
            "gpu_peak_mb": _gpu_peak_mb(spec["device"])}


def embed_place(config, device: str) -> str:
    return config.embed_in if config.embed_in != "auto" else ("main" if device == "cuda" else "workers")


def measure_floor(spec: dict) -> dict:
    """Decode every clip as make features-floor does (pipeline.decode_floor), timed without listing the
    corpus: converting every frame to BGR (the floor of the aim), then again without conversion."""
    from common.processes import process_pool
    from extract.engine import FeaturesConfig, load_jobs
    from pipeline.decode_floor import decode_clip, decode_clip_unconverted

    jobs = load_jobs(FeaturesConfig(dataset=spec["dataset"], corpus_dir=spec["corpus"]))
    figures = {"clips": len(jobs), "worker_peak_mb": 0.0}
    for name, decode in (("", decode_clip), ("unconverted_", decode_clip_unconverted)):
        started = time.perf_counter()
        with process_pool(spec["workers"]) as pool:
            counted = list(pool.map(functools.partial(_frames_and_peak, decode), jobs, chunksize=4))
        figures[f"{name}seconds"] = time.perf_counter() - started
        figures[f"{name}frames"] = sum(frames for frames, _ in counted)
        figures["worker_peak_mb"] = max([figures["worker_peak_mb"]] + [peak for _, peak in counted])
    return figures


def _frames_and_peak(decode, job) -> tuple[int, float]:
    """A floor worker's frames of one clip, and its own peak memory after them."""
    from common.processes import peak_memory_mb

    return decode(job), peak_memory_mb()


def measure_boxes(spec: dict) -> dict:
    """Box agreement of the default face following with every-frame detection (bench.box_agreement)."""
    from bench.box_agreement import agreement, videos_of
    from bench.report import box_sentence
    from extract.spec import ExtractionSpec

    figures = agreement(videos_of(Path(spec["corpus"]), spec["clips"]), ExtractionSpec())
    print(f"box agreement: {box_sentence(figures)}")
    return figures


def measure_training(spec: dict) -> dict:
    """make train on one size (cwd is the size's folder, where make train builds its manifest)."""
    from common.config import from_values
    from corpora.manifest import load_manifest
    from corpora.registry import build_manifest
    from training.run_folder import METRICS_FILE
    from training.stage import TrainStageConfig, run_training

    stage = from_values(TrainStageConfig, {**spec["stage"], "runs_root": Path(spec["stage"]["runs_root"])})
    run_dir = run_training(stage).path
    with open(run_dir / METRICS_FILE, newline="") as stream:
        epochs = [{name: float(value) for name, value in row.items()} for row in csv.DictReader(stream)]
    manifest = load_manifest(build_manifest(stage.manifest)[0])
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
    from inference.evaluation import evaluate_run
    from training.run_folder import RunFolder

    started = time.perf_counter()
    metrics = evaluate_run(RunFolder(Path(spec["run_dir"])), 32, spec["device"], {"device": spec["device"]})
    seconds = time.perf_counter() - started
    return {"clips": metrics["clips"], "conditions": len(metrics["results"]), "seconds": seconds,
            "clips_per_second": metrics["clips"] / seconds, "gpu_peak_mb": _gpu_peak_mb(spec["device"])}


def measure_warm_prediction(spec: dict) -> dict:
    """Latency of Predictor.predict with the model loaded, and where a call's time goes (its own timings)."""
    from inference.predictor import Predictor

    started = time.perf_counter()
    predictor = Predictor(Path(spec["run_dir"]), spec["device"])
    load_seconds = time.perf_counter() - started
    path = Path(spec["clip"])
    latencies, parts = [], []
    with predictor.extractor.open_detector() as detector:
        first = predictor.predict(path, detector)  # untimed: the first call pays one-off initialisation
        if first.error:
            raise BenchError(f"prediction failed: {first.error}")
        for _ in range(spec["runs"]):
            tick = time.perf_counter()
            prediction = predictor.predict(path, detector)
            latencies.append(time.perf_counter() - tick)
            parts.append({PART_NAMES.get(name, name): seconds for name, seconds in prediction.seconds.items()})
    median = statistics.median(latencies)
    by_part = {name: statistics.median(run[name] for run in parts) for name in parts[0]}
    by_part["other (by difference)"] = max(median - sum(by_part.values()), 0.0)
    return {"load_seconds": load_seconds, "latencies": latencies, "median": median, "parts": by_part,
            "emotion": first.emotion, "gpu_peak_mb": _gpu_peak_mb(spec["device"])}


def measure_recording(spec: dict) -> dict:
    """make predict --segments speech on one long recording, timed whole (model load included)."""
    import json

    from pipeline.predict import main

    video, out_dir = Path(spec["video"]), Path(spec["out_dir"])
    started = time.perf_counter()
    code = main(["--video", str(video), "--run-dir", spec["run_dir"], "--out-dir", str(out_dir),
                 "--device", spec["device"], "--segments", "speech"])
    seconds = time.perf_counter() - started
    if code != 0:
        raise BenchError(f"make predict --segments speech failed on {video.name} (exit status {code})")
    (recording,) = json.loads((out_dir / f"{video.stem}.json").read_text())["recordings"]
    return {"seconds": seconds, "duration": recording["duration"], "segments": len(recording["segments"]),
            "speech_seconds": recording["speech_seconds"], "parts": recording["seconds"]}


MEASUREMENTS = {"extraction": measure_extraction, "floor": measure_floor, "boxes": measure_boxes,
                "training": measure_training,
                "evaluation": measure_evaluation, "warm_prediction": measure_warm_prediction,
                "recording": measure_recording}
