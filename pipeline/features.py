"""Stage: extract features from a corpus's raw clips into HDF5 shards (``make features``).

Reads the corpus manifest (built first when missing; see pipeline.manifest) and each clip's
media. Writes data/features/<dataset>/<feature-config>/: shards (extract.shards), index.csv,
extraction.yaml (this config, the sha256 of every model file used, package versions) and
failures-<shard>.csv (clips that yielded nothing, and why).

Worker processes decode the video, detect and follow the face and crop it, and read the audio;
the main process embeds the crops and computes log-mels in batches on --device and writes the
shards. Work is split across machines or GPUs by --num-shards K --shard-index i, or by torchrun's
RANK / WORLD_SIZE or a SLURM array's SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT when set.
A rerun skips clips already in complete shards; FORCE=1 (--force) redoes this shard's clips.
"""
from __future__ import annotations

import csv
import hashlib
import os
import resource
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from corpora.manifest import CorpusError, load_manifest
from extract.audio import LogMel, MelConfig
from extract.clip_media import ClipJob, ClipMedia, TrackConfig, process_clip
from extract.face_encoders import make_face_encoder
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, ModelFileError, model_path, sha256_of
from extract.shards import ClipFeatures, ShardWriter, build_index, clip_ids_in, remove_partial_shards, shard_files
from pipeline.config import option, parse_config, to_yaml
from pipeline.manifest import ManifestConfig, build_manifest

CONFIG_FILE = "extraction.yaml"
DETECTORS = ("mediapipe", "haar")
PACKAGES = ("torch", "torchaudio", "torchvision", "av", "opencv-contrib-python", "mediapipe", "numpy", "h5py")


@dataclass
class FeaturesConfig:
    dataset: str = option("demo", "corpus: demo, crema, improv or folder (see make manifest)")
    corpus_dir: str = option("", "corpus folder, when not the dataset's default")
    out_root: Path = option(Path("data/features"), "features go to <out-root>/<dataset>/<feature-config>/")
    manifests_dir: Path = option(Path("data/manifests"), "where the corpus manifest is found or built")
    encoder: str = option("fer", "face encoder: fer (offline) or resnet18")
    encoder_weights: str = option("", "weights file for the encoder (resnet18)")
    detector: str = option("mediapipe", "face detector: mediapipe (BlazeFace) or haar (OpenCV cascade)")
    # Every third frame keeps the boxes on the face (mean IoU 0.988 with every-frame detection on
    # the demo corpus) at a third of the detection cost.
    detect_every: int = option(3, "run the face detector on every k-th frame and interpolate between")
    max_gap_frames: int = option(5, "interpolate face boxes across at most this many frames without a face")
    crop_margin: float = option(0.15, "face crop margin on each side, as a fraction of the box size")
    n_mels: int = option(80, "mel bands")
    win_ms: float = option(25.0, "log-mel window, milliseconds")
    hop_ms: float = option(10.0, "log-mel hop, milliseconds")
    device: str = option("auto", "where embeddings and log-mels are computed: auto, cpu, cuda")
    workers: int = option(os.cpu_count() or 1, "worker processes that decode and detect")
    num_shards: int = option(0, "split the corpus into K parts (0: from RANK/WORLD_SIZE or SLURM, else 1)")
    shard_index: int = option(-1, "which part this run does (-1: from the environment, else 0)")
    clips_per_shard: int = option(64, "clips per HDF5 shard (also the most a killed run loses per process)")
    embed_batch: int = option(256, "face crops per embedding batch")
    force: bool = option(False, "redo this part's clips even when extracted")
    strict: bool = option(False, "exit non-zero when any clip fails or misses a modality")

    def identity(self, encoder_sha256: str, crop_size: int) -> dict:
        """What determines the features (not where or how fast they are computed)."""
        return {"encoder": self.encoder, "encoder_sha256": encoder_sha256, "crop_size": crop_size,
                "detector": self.detector, "detect_every": self.detect_every,
                "max_gap_frames": self.max_gap_frames, "crop_margin": self.crop_margin,
                "mel": asdict(self.mel())}

    def mel(self) -> MelConfig:
        return MelConfig(self.n_mels, self.win_ms, self.hop_ms)


def resolve_shard(config: FeaturesConfig, environ=os.environ) -> tuple[int, int]:
    """(number of parts, this part's index) from the options, else torchrun, else a SLURM array."""
    if config.num_shards > 0:
        index = max(config.shard_index, 0)
    elif "WORLD_SIZE" in environ and "RANK" in environ:
        config.num_shards, index = int(environ["WORLD_SIZE"]), int(environ["RANK"])
    elif "SLURM_ARRAY_TASK_COUNT" in environ and "SLURM_ARRAY_TASK_ID" in environ:
        config.num_shards = int(environ["SLURM_ARRAY_TASK_COUNT"])
        index = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    else:
        config.num_shards, index = 1, 0
    if not 0 <= index < config.num_shards:
        raise ValueError(f"shard index {index} is outside 0..{config.num_shards - 1}")
    return config.num_shards, index


def load_jobs(config: FeaturesConfig) -> list[ClipJob]:
    folder, _ = build_manifest(ManifestConfig(dataset=config.dataset, corpus_dir=config.corpus_dir,
                                              out_dir=Path(config.manifests_dir)))
    manifest = load_manifest(folder)
    jobs = [ClipJob(c.clip_id, manifest.media(c.audio_path), manifest.media(c.video_path), c.speaker, c.label)
            for c in manifest.clips]
    return sorted(jobs, key=lambda job: job.clip_id)


def feature_folder(config: FeaturesConfig, identity: dict) -> Path:
    digest = hashlib.sha256(yaml.safe_dump(identity, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{config.encoder}-{config.detector}-k{config.detect_every}-mel{config.n_mels}-{digest}"
    return config.out_root / config.dataset / name


def write_config(folder: Path, config: FeaturesConfig, identity: dict, detector_sha256: str) -> None:
    """extraction.yaml: refuse to mix features of another config into an existing folder."""
    path = folder / CONFIG_FILE
    record = {"identity": identity, "face_detector_sha256": detector_sha256,
              "packages": {name: metadata.version(name) for name in PACKAGES},
              "config": yaml.safe_load(to_yaml(config))}
    if path.exists() and yaml.safe_load(path.read_text())["identity"] != identity:
        raise ValueError(f"{path} records another feature config; use another --out-root or delete {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(record, sort_keys=False))


_worker: dict = {}


def _init_worker(detector_name: str, detector_file: str, track: TrackConfig) -> None:
    import cv2

    from extract.face_detection import HaarFaceDetector, MediaPipeFaceDetector

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    detector = MediaPipeFaceDetector(Path(detector_file)) if detector_name == "mediapipe" else HaarFaceDetector()
    _worker.update(detector=detector, track=track)


def _work(job: ClipJob) -> ClipMedia:
    return process_clip(job, _worker["detector"], _worker["track"])


def run_workers(jobs: list[ClipJob], workers: int, initargs: tuple):
    """Yield ClipMedia as workers finish, keeping only a few clips in flight so memory stays flat."""
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=initargs) as pool:
        queue = iter(jobs)
        in_flight = set()
        while True:
            while len(in_flight) < 2 * workers and (job := next(queue, None)) is not None:
                in_flight.add(pool.submit(_work, job))
            if not in_flight:
                return
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


class Extractor:
    """The main process's part: batched embeddings and log-mels, then the shard writer."""

    def __init__(self, encoder, log_mel: LogMel, writer: ShardWriter, embed_batch: int):
        self.encoder, self.log_mel, self.writer, self.embed_batch = encoder, log_mel, writer, embed_batch
        self.pending: list[ClipMedia] = []
        self.seconds = Counter()

    def add(self, media: ClipMedia) -> None:
        self.pending.append(media)
        if sum(len(m.crops) for m in self.pending if m.crops is not None) >= self.embed_batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        tick = time.perf_counter()
        crops = [m.crops for m in self.pending if m.crops is not None]
        embedded = self.encoder.embed(np.concatenate(crops)) if crops else np.zeros((0, self.encoder.embedding_dim))
        self.seconds["embed"] += time.perf_counter() - tick
        tick = time.perf_counter()
        with_audio = [m for m in self.pending if m.audio is not None]
        mels = dict(zip((id(m) for m in with_audio), self.log_mel([m.audio for m in with_audio])))
        self.seconds["mel"] += time.perf_counter() - tick
        tick = time.perf_counter()
        start = 0
        for media in self.pending:
            n_valid = 0 if media.crops is None else len(media.crops)
            self.writer.add(clip_features(media, embedded[start:start + n_valid], mels.get(id(media)),
                                          self.log_mel.config.n_mels))
            start += n_valid
        self.seconds["write"] += time.perf_counter() - tick
        self.pending = []


def clip_features(media: ClipMedia, embedded: np.ndarray, mel: np.ndarray | None, n_mels: int) -> ClipFeatures:
    embedding = np.zeros((len(media.valid), embedded.shape[1] if embedded.ndim == 2 else 0), np.float32)
    embedding[media.valid] = embedded
    return ClipFeatures(
        clip_id=media.job.clip_id, mel=mel if mel is not None else np.zeros((0, n_mels), np.float32),
        embedding=embedding, valid=media.valid, boxes=media.boxes, timestamps=media.timestamps,
        duration=media.duration, fps=media.fps, speaker=media.job.speaker, label=media.job.label,
        audio_note=media.audio_note, video_note=media.video_note)


@dataclass
class RunReport:
    clips: int = 0
    skipped: int = 0  # already extracted
    frames: int = 0
    face_frames: int = 0
    audio_missing: int = 0
    video_missing: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (clip id, why)
    seconds: Counter = field(default_factory=Counter)  # time per part, summed over processes
    wall: float = 0.0

    def summary(self) -> str:
        rate = self.clips / self.wall if self.wall else 0.0
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(self.seconds.items()))
        faces = self.face_frames / self.frames if self.frames else 0.0
        main_mb, worker_mb = peak_memory_mb()
        return (f"{self.clips} clips extracted ({self.skipped} already done), {len(self.failures)} failed, "
                f"{self.audio_missing} without audio, {self.video_missing} without a face; "
                f"face found in {faces:.1%} of {self.frames} frames; "
                f"{rate:.2f} clips/s, {self.frames / self.wall if self.wall else 0:.0f} frames/s "
                f"in {self.wall:.1f} s\ntime by part (s, summed over processes): {parts}\n"
                f"peak resident memory: main process {main_mb:.0f} MB, largest worker {worker_mb:.0f} MB")


def peak_memory_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 1024, children / 1024  # Linux reports kilobytes


def extract(config: FeaturesConfig) -> tuple[Path, RunReport]:
    started = time.monotonic()
    num_shards, shard_index = resolve_shard(config)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    # The workers keep their cores busy: more embedding threads here than the cores they leave
    # only spin against them (measured: 4.9 ms a crop with 2 threads beside 2 workers on 2 cores,
    # 1.0 ms with 1).
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - config.workers))
    if config.detector not in DETECTORS:
        raise ValueError(f"unknown detector {config.detector!r}; choose one of {', '.join(DETECTORS)}")
    if config.detect_every < 1 or config.max_gap_frames < config.detect_every - 1:
        raise ValueError("--detect-every must be at least 1 and --max-gap-frames at least detect-every - 1")
    encoder = make_face_encoder(config.encoder, device, Path(config.encoder_weights) if config.encoder_weights else None)
    identity = config.identity(encoder.weights_sha256, encoder.input_size)
    folder = feature_folder(config, identity)
    detector_file = model_path(FACE_DETECTOR_SHORT_RANGE) if config.detector == "mediapipe" else None
    write_config(folder, config, identity, sha256_of(detector_file) if detector_file else "")
    remove_partial_shards(folder)

    prefix = f"part{shard_index}of{num_shards}"
    jobs = load_jobs(config)[shard_index::num_shards]
    if config.force:
        for path in folder.glob(f"{prefix}-*.h5"):
            path.unlink()
    done = {clip_id for path in shard_files(folder) for clip_id in clip_ids_in(path)}
    todo = [job for job in jobs if job.clip_id not in done]

    mel = config.mel()
    track = TrackConfig(config.detect_every, config.max_gap_frames, encoder.input_size, config.crop_margin,
                        mel.win_length)
    writer = ShardWriter(folder, prefix, config.clips_per_shard, mel.n_mels, encoder.embedding_dim)
    extractor = Extractor(encoder, LogMel(mel, device), writer, config.embed_batch)
    report = RunReport(skipped=len(jobs) - len(todo))
    initargs = (config.detector, str(detector_file or ""), track)
    for media in tqdm(run_workers(todo, config.workers, initargs), total=len(todo), unit="clip",
                      desc=f"features {prefix}", disable=not todo):
        report.seconds.update(media.seconds)
        if media.failed:
            report.failures.append((media.job.clip_id, f"{media.audio_note}; {media.video_note}"))
            continue
        report.clips += 1
        report.frames += len(media.valid)
        report.face_frames += int(media.valid.sum())
        report.audio_missing += media.audio is None
        report.video_missing += not media.valid.any()
        extractor.add(media)
    extractor.flush()
    writer.flush()
    report.seconds.update(extractor.seconds)
    build_index(folder)
    _write_failures(folder / f"failures-{prefix}.csv", report.failures)
    report.wall = time.monotonic() - started
    return folder, report


def _write_failures(path: Path, failures: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_id", "reason"])
        writer.writerows(failures)


def main(argv: list[str] | None = None) -> int:
    config = parse_config(FeaturesConfig, argv, description=__doc__)
    try:
        folder, report = extract(config)
    except (CorpusError, ModelFileError, ValueError) as error:
        print(f"features: {error}", file=sys.stderr)
        return 2
    print(f"features: {report.summary()}")
    for clip_id, reason in report.failures[:10]:
        print(f"features: failed {clip_id}: {reason}", file=sys.stderr)
    print(f"features: written to {folder} (check it with make verify-features)")
    if report.clips == 0 and report.skipped == 0:
        return 1
    partial = report.failures or report.audio_missing or report.video_missing
    return 1 if config.strict and partial else 0


if __name__ == "__main__":
    sys.exit(main())
