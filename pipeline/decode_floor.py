"""Stage: the decode-only floor of feature extraction (``make features-floor``).

Reads the same clips as ``make features`` (the corpus's clip list) with the same number of worker
processes, and only decodes every video frame (as BGR arrays, as extraction does) and reads the
audio: no extraction can be faster. Prints clips/s and frames/s; writes nothing.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from common.cli import run_stage
from common.config import option
from extract.audio import NoAudio, read_audio
from extract.clip_media import ClipJob
from extract.engine import FeaturesConfig, load_jobs
from extract.face_track import NoVideo, decode_video


@dataclass
class FloorConfig:
    dataset: str = option("demo", "corpus: demo, crema, improv or folder")
    corpus_dir: str = option("", "corpus folder, when not the dataset's default")
    workers: int = option(os.cpu_count() or 1, "worker processes (use the same as for make features)")


def decode_clip(job: ClipJob) -> int:
    """Frames decoded; the audio is read too, as extraction reads it."""
    import cv2

    cv2.setNumThreads(1)
    audio_source = job.audio_path or job.video_path
    if audio_source:
        try:
            read_audio(audio_source)
        except NoAudio:
            pass
    try:
        return sum(1 for _ in decode_video(job.video_path)) if job.video_path else 0
    except NoVideo:
        return 0


def features_floor(config: FloorConfig) -> int:
    jobs = load_jobs(FeaturesConfig(dataset=config.dataset, corpus_dir=config.corpus_dir))
    started = time.monotonic()
    with ProcessPoolExecutor(config.workers) as pool:
        frames = sum(tqdm(pool.map(decode_clip, jobs, chunksize=4), total=len(jobs), unit="clip", desc="decode only"))
    seconds = time.monotonic() - started
    print(f"features-floor: decoded {len(jobs)} clips, {frames} frames in {seconds:.1f} s with {config.workers} "
          f"workers: {len(jobs) / seconds:.2f} clips/s, {frames / seconds:.0f} frames/s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("features-floor", FloorConfig, features_floor, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
