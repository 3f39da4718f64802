"""Benchmark of the pipeline on demo corpora (``make bench``).

Measures, on demo corpora of a few sizes (generated once into --work-dir and reused):

1. Extraction (``extract.engine.extract``): clips/s and frames/s with 1 worker and with
   --workers, beside the decode-only floor (``pipeline.decode_floor.decode_clip``) over the
   same clips with the same worker count, the ratio of the two, the time by part and the peak
   resident memory of the main process and of its largest worker.
2. Training (``training.stage.run_training``, --epochs on each size): training clips/s, seconds per
   epoch, the share of the epoch spent waiting for data, peak memory; evaluation
   (``inference.evaluation.evaluate_run``) clips/s and peak memory.
3. Prediction (``pipeline.predict``; warm: ``inference.predictor.Predictor``) of the demo clip
   nearest 2.5 s: cold (a new process that
   loads the model) and warm (model loaded), as a fraction of the clip's duration.
4. Scaling: each figure against clip count (the --actors sizes) and clip length (demo clips
   joined end to end, the same frames in fewer, longer clips; and one clip of --long-clip demo
   clips, whose worker's peak memory must match the short clips'); least-squares fits of seconds on
   clips and frames; projections of full CREMA-D and MSP-IMPROV on 2 CPU cores, and on one GPU
   machine from a run with --device cuda.
5. GPU (--device cuda): the GPU's name, its utilisation (nvidia-smi about every 200 ms) during
   extraction and training, peak GPU memory.
6. Long recordings: ``make predict --segments speech`` on a recording of --long-recording-minutes
   and on one of --baseline-recording-minutes, both made of demo clips in turn with pauses between
   them (bench.corpora.long_recording), with the trained run: time as a share of the recording's
   duration, and peak memory, which must not grow with the recording's length.

Every measurement runs in a fresh child process, so that its peak memory is its own (peak
resident memory is a high-water mark over a process's life), read by each process itself
(``common.processes.peak_memory_mb``). Timers are the standard library's.
Writes bench/results/<date>-<host>.json (every figure, the machine, this config) and .md (the
tables, each aim met or missed and by how much); a --device cuda run adds -cuda to the names.
"""
from __future__ import annotations

import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.audio_encoders import AUDIO_ENCODERS, encoder_list, run_audio_encoders
from bench.corpora import clip_nearest, demo_corpus, length_series, long_clip, long_recording
from bench.fits import median_round, worker_counts
from bench.report import duration, summarise, write_results
from bench.runner import REPO_ROOT, BenchError, Runner
from common.cli import run_stage
from common.config import option, to_yaml
from common.device import resolve_device
from model.options import ModelOptions
from training.config import TrainConfig

PREDICT_CLIP_SECONDS = 2.5


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
    long_clip: int = option(96, "demo clips of the largest corpus joined into one long clip (96: 3 minutes), "
                                "extracted with 1 worker, whose peak memory is set against the demo's short "
                                "clips' (0: none)")
    long_recording_minutes: float = option(20.0, "minutes of the long recording predicted with --segments speech "
                                                 "(demo clips with pauses between them; 0: none)")
    baseline_recording_minutes: float = option(3.0, "minutes of the recording made the same way whose peak memory "
                                                     "the long one's is set against")
    workers: int = option(os.cpu_count() or 1, "the all-cores worker count, measured beside 1 worker")
    device: str = option("auto", "auto (cuda when available), cpu or cuda, for every stage")
    epochs: int = option(1, "training epochs per size (the last epoch is reported)")
    batch_size: int = option(TrainConfig.batch_size, "training clips per batch (built-in default)")
    audio_pool: str = option(ModelOptions.audio_pool, "training --audio-pool (built-in default)")
    video_pool: str = option(ModelOptions.video_pool, "training --video-pool (built-in default)")
    num_workers: int = option(TrainConfig.num_workers, "training data loading processes (built-in default)")
    audio_encoders: str = option(",".join(AUDIO_ENCODERS), "audio encoders whose extraction of the largest corpus "
                                 "with --workers is timed, in turn each round, against the log-mel's (which is "
                                 "always among them): logmel, egemaps, wav2vec2 (a tiny one built in --work-dir, "
                                 "for its plumbing); '': none")
    training: bool = option(True, "train, evaluate and predict on each size (--no-training: extraction only)")
    box_clips: int = option(24, "clips of the largest corpus whose face boxes are compared with detection on "
                                "every frame (bench.box_agreement; 0: none)")
    extraction_rounds: int = option(3, "runs of each extraction and of its floor, taken in turn; the median "
                                       "of each is reported (all of them in the JSON)")
    cold_runs: int = option(3, "cold predictions (a new process each); the median is reported")
    warm_runs: int = option(5, "warm predictions after one untimed call; the median is reported")
    improv_frames: int = option(0, "MSP-IMPROV video frames for the projection (0: its clips times the demo's "
                                   "mean clip length, as no sourced figure is at hand)")
    work_dir: Path = option(Path("bench/scratch"), "demo corpora are kept here for the next run; each run's "
                                                   "features, manifests and training runs go below it")
    keep_work: bool = option(False, "keep this run's features, manifests and training runs")
    results_dir: Path = option(Path("bench/results"), "where <date>-<host>.json and .md are written")


def parse_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def features_root(folder: Path, workers: int, round_index: int) -> Path:
    """Where one round's extraction writes: a new folder each round, so that none skips the clips of another."""
    return folder / f"features-w{workers}-r{round_index}"


def run_extractions(runner: Runner, dataset: str, corpus: Path, folder: Path, series: str, label: str,
                    counts: Sequence[int], rounds: int) -> Iterator[dict]:
    """Full extraction and decode floor of one corpus, for each worker count, ``rounds`` times each."""
    base = {"dataset": dataset, "corpus": str(corpus.resolve())}
    for workers in counts:
        fulls, floors = [], []
        for round_index in range(rounds):
            # In turn, so that a slow spell of a shared machine falls on both sides of the ratio.
            spec = {**base, "workers": workers, "out_root": str(features_root(folder, workers, round_index))}
            name = f"{label}-w{workers}-r{round_index}"
            fulls.append(runner.measure("extraction", f"extract-{name}", spec, sample_gpu=True))
            floors.append(runner.measure("floor", f"floor-{name}", spec))
        full, floor = median_round(fulls), median_round(floors)
        record = {"series": series, "label": label, "workers": workers, "full": full, "floor": floor,
                  "rounds": {"full": [f["seconds"] for f in fulls], "floor": [f["seconds"] for f in floors]}}
        print(f"bench: extraction {label}, {workers} worker(s): {full['clips']} clips, {full['frames']} frames in "
              f"{full['seconds']:.1f} s, floor {floor['seconds']:.1f} s (medians of {rounds})", flush=True)
        yield record


def measure_all(config: BenchConfig, device: str, work_dir: Path, run_dir: Path) -> dict:
    """Every measurement; work_dir and run_dir are absolute, as children run in other folders."""
    runner = Runner(run_dir, device)
    actors, factors = parse_list(config.actors), parse_list(config.length_factors)
    counts = worker_counts(config.workers)
    raw: dict = {"corpora": [], "extraction": [], "audio_encoders": [], "training": [], "prediction": None,
                 "boxes": None, "recordings": None}
    trained, corpora = None, {}
    for n_actors in actors:
        corpus, corpus_record = demo_corpus(work_dir, n_actors, config.sentences, config.seed, config.workers)
        corpora[n_actors] = corpus
        raw["corpora"].append(corpus_record)
        label = corpus_record["label"]
        folder = run_dir / label
        records = list(run_extractions(runner, "demo", corpus, folder, "count", label, counts,
                                       config.extraction_rounds))
        raw["extraction"] += records
        if config.training:
            # Train on the all-cores extraction (the features do not depend on the worker count or round).
            features = features_root(folder, counts[-1], 0) / "demo" / records[-1]["full"]["features"]
            raw["training"].append(train_and_evaluate(runner, config, corpus, features, folder, label))
            trained = (corpus, features, raw["training"][-1]["training"]["run_dir"])
    encoders = encoder_list(config.audio_encoders)
    if encoders:
        label = raw["corpora"][actors.index(max(actors))]["label"]
        raw["audio_encoders"] = run_audio_encoders(runner, corpora[max(actors)], run_dir / label / "encoders", label,
                                                   counts[-1], config.extraction_rounds, encoders, work_dir)
    if config.box_clips:
        raw["boxes"] = runner.measure("boxes", "boxes", {"corpus": str(corpora[max(actors)].resolve()),
                                                         "clips": config.box_clips})
        print(f"bench: face boxes of {config.box_clips} clips against detection on every frame: mean IoU "
              f"{raw['boxes']['all']['mean']:.3f}", flush=True)
    if config.length_clips and factors:
        for factor, corpus in length_series(corpora[min(actors)], config.length_clips, factors, work_dir).items():
            raw["extraction"] += run_extractions(runner, "folder", corpus, run_dir / f"x{factor}", "length",
                                                 f"x{factor}", counts[-1:], config.extraction_rounds)
    if config.long_clip:
        raw["extraction"] += measure_long_clip(runner, config, corpora[max(actors)], work_dir, run_dir)
    if trained:
        raw["prediction"] = measure_prediction(runner, config, *trained)
    if trained and config.long_recording_minutes:
        raw["recordings"] = measure_recordings(runner, config, trained[0], trained[2], work_dir)
    return raw


def measure_recordings(runner: Runner, config: BenchConfig, corpus: Path, run_dir: str, work_dir: Path) -> dict:
    """The baseline and the long recording predicted by segments, each in a process of its own."""
    figures = {}
    for name, minutes in (("baseline", config.baseline_recording_minutes), ("long", config.long_recording_minutes)):
        video = long_recording(corpus, minutes, work_dir)
        spec = {"video": str(video), "run_dir": run_dir, "out_dir": str(runner.run_dir / "recordings")}
        figures[name] = {"minutes": minutes, **runner.measure("recording", f"recording-{minutes:g}min", spec)}
        print(f"bench: {minutes:g}-minute recording by segments: {figures[name]['segments']} segments in "
              f"{figures[name]['seconds']:.1f} s, peak {figures[name]['peak_mb']['main']} MB", flush=True)
    return figures


def measure_long_clip(runner: Runner, config: BenchConfig, corpus: Path, work_dir: Path, run_dir: Path) -> list[dict]:
    """Extraction of one clip of ``config.long_clip`` demo clips, with 1 worker: a worker's memory
    must not grow with the length of the clip it is given."""
    folder, joined = long_clip(corpus, config.long_clip, work_dir)
    return list(run_extractions(runner, "folder", folder, run_dir / "long", "long", f"x{joined}", [1],
                                config.extraction_rounds))


def train_and_evaluate(runner: Runner, config: BenchConfig, corpus: Path, features: Path, folder: Path,
                       label: str) -> dict:
    stage = {"dataset": "demo", "preset": "none", "corpus_dir": str(corpus.resolve()), "features_dir": str(features),
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


def validate(config: BenchConfig) -> None:
    actors, factors = parse_list(config.actors), parse_list(config.length_factors)
    if not actors or min(actors) < 3:
        raise BenchError(f"--actors needs sizes of at least 3 actors (a partition needs 3), got {config.actors!r}")
    if not 1 <= config.sentences <= 12:
        raise BenchError(f"--sentences must be 1-12, got {config.sentences}")
    if config.length_clips and factors and (min(factors) < 1 or config.length_clips < max(factors)):  # 0: no series
        raise BenchError("--length-factors must be at least 1 and --length-clips at least the largest factor")
    if config.box_clips < 0 or config.long_clip < 0:
        raise BenchError("--box-clips and --long-clip must be at least 0")
    encoder_list(config.audio_encoders)  # names it does not know are refused before anything runs
    if config.long_recording_minutes and not 0 < config.baseline_recording_minutes < config.long_recording_minutes:
        raise BenchError("--baseline-recording-minutes must be above 0 and below --long-recording-minutes, against "
                         f"which it is set, got {config.baseline_recording_minutes:g} and "
                         f"{config.long_recording_minutes:g}")
    if config.long_recording_minutes < 0:
        raise BenchError(f"--long-recording-minutes must be at least 0, got {config.long_recording_minutes:g}")
    counts = (config.epochs, config.extraction_rounds, config.cold_runs, config.warm_runs, config.workers)
    if min(counts) < 1:
        raise BenchError("--epochs, --extraction-rounds, --cold-runs, --warm-runs and --workers must be at least 1")


def command_line(argv: Sequence[str] | None) -> str:
    """The arguments as a shell takes them back (an empty one quoted: --length-factors '')."""
    return shlex.join(argv if argv is not None else sys.argv[1:])


def _public(raw: dict) -> dict:
    """The figures without this machine's scratch paths."""
    for record in raw["training"]:
        record["training"].pop("run_dir", None)
    return raw


def bench(config: BenchConfig, argv: list[str] | None = None) -> int:
    started = time.monotonic()
    validate(config)
    device = resolve_device(config.device).type
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


def main(argv: list[str] | None = None) -> int:
    return run_stage("bench", BenchConfig, lambda config: bench(config, argv), argv, __doc__)


def _config_values(config: BenchConfig) -> dict:
    import yaml

    return yaml.safe_load(to_yaml(config))


if __name__ == "__main__":
    sys.exit(main())
