"""Stage: the decode-only floor of feature extraction (``make features-floor``).

Reads the same clips as ``make features`` (the corpus's clip list) with the same number of worker
processes, and only decodes every video frame and reads the audio. Every frame is converted to a
BGR array, and turned upright when it is stored turned (a rotation tag), as extraction did before
it converted only the frames it follows the face on (``--face-rate``); ``--no-convert`` decodes
without the conversion, the floor of any extraction that decodes every frame. Prints clips/s and
frames/s; writes nothing.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from tqdm import tqdm

from common.cli import run_stage
from common.config import option
from common.processes import process_pool
from extract.audio import NoAudio, read_audio
from extract.clip_media import ClipJob
from extract.engine import FeaturesConfig, load_jobs
from extract.face_track import NoVideo, Video, decode_video


@dataclass
class FloorConfig:
    dataset: str = option("demo", "corpus: demo, crema, improv or folder")
    corpus_dir: str = option("", "corpus folder, when not the dataset's default")
    workers: int = option(os.cpu_count() or 1, "worker processes (use the same as for make features)")
    no_convert: bool = option(False, "decode without converting the frames to BGR arrays")


def decode_clip(job: ClipJob, convert: bool = True) -> int:
    """Frames decoded (each converted to an upright BGR array unless ``convert`` is false); the audio
    is read too, as extraction reads it."""
    import cv2

    cv2.setNumThreads(1)
    audio_source = job.audio_path or job.video_path
    if audio_source:
        try:
            read_audio(audio_source)
        except NoAudio:
            pass
    if not job.video_path:
        return 0
    try:
        if convert:
            return sum(1 for _ in decode_video(job.video_path))
        with Video(job.video_path) as video:
            return sum(1 for _ in video.frames())
    except NoVideo:
        return 0


def decode_clip_unconverted(job: ClipJob) -> int:
    return decode_clip(job, convert=False)


def features_floor(config: FloorConfig) -> int:
    jobs = load_jobs(FeaturesConfig(dataset=config.dataset, corpus_dir=config.corpus_dir))
    started = time.monotonic()
    with process_pool(config.workers) as pool:
        decode = decode_clip_unconverted if config.no_convert else decode_clip
        frames = sum(tqdm(pool.map(decode, jobs, chunksize=4), total=len(jobs), unit="clip", desc="decode only"))
    seconds = time.monotonic() - started
    how = "without conversion" if config.no_convert else "to BGR arrays"
    print(f"features-floor: decoded {len(jobs)} clips, {frames} frames {how} in {seconds:.1f} s with "
          f"{config.workers} workers: {len(jobs) / seconds:.2f} clips/s, {frames / seconds:.0f} frames/s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("features-floor", FloorConfig, features_floor, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
