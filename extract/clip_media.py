"""The per-clip work of an extraction worker: read the audio, decode the video, follow the face,
crop it. Runs in worker processes; the embedding and log-mel steps run batched in the main
process (on the GPU when there is one), see extract.engine and extract.spec.Extractor.

A modality that cannot be had is recorded with the reason instead of failing the clip: a clip
fails only when it yields neither audio nor a face.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.audio import SAMPLE_RATE, NoAudio, read_audio, resample
from extract.face_track import (
    NoVideo,
    as_array,
    choose_face,
    crop_face,
    decode_video,
    fill_gaps,
    large_enough,
    video_fps,
)

# Audio and video of one clip that differ by more than this were cut short (or do not belong
# together). Sound clips differ by less: AAC, the usual audio codec of video files, adds a priming
# frame of 1024 samples and pads its last frame to 1024 (up to 0.128 s at 16 kHz, 0.046 s at
# 44.1 kHz; the demo's FLV tracks are 0.11 s longer than their WAVs), and the video's length is
# rounded to a frame (0.04 s at 25 fps).
LENGTH_TOLERANCE_SECONDS = 0.2


@dataclass(frozen=True)
class ClipJob:
    clip_id: str
    audio_path: Path | None
    video_path: Path | None


@dataclass(frozen=True)
class TrackConfig:
    detect_every: int  # run the detector on every k-th frame, interpolate between
    max_gap_frames: int
    crop_size: int
    crop_margin: float
    min_audio_samples: int  # shorter audio is unusable (less than one analysis window)
    min_face_size: float = 0.0  # smaller detections are ignored: a fraction of the frame's shorter side


@dataclass
class ClipMedia:
    """What a worker hands back for one clip (before embedding and log-mel)."""

    job: ClipJob
    audio: np.ndarray | None = None  # 16 kHz mono float32
    audio_note: str = ""
    crops: np.ndarray | None = None  # (valid frames, size, size, 3) uint8 BGR
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fps: float = 0.0
    detection_scores: list[float] = field(default_factory=list)  # of the detections the track took
    video_note: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per part

    @property
    def failed(self) -> bool:
        return self.audio is None and not self.valid.any()

    @property
    def lengths_disagree(self) -> bool:
        """Audio and video of different lengths (LENGTH_TOLERANCE_SECONDS): one of them cut short."""
        return "truncated?" in self.video_note

    @property
    def duration(self) -> float:
        if len(self.timestamps):
            return float(len(self.timestamps) / self.fps) if self.fps else float(self.timestamps[-1])
        return len(self.audio) / SAMPLE_RATE if self.audio is not None else 0.0


def process_clip(job: ClipJob, detector, config: TrackConfig) -> ClipMedia:
    media = ClipMedia(job)
    started = time.perf_counter()
    media.audio, media.audio_note = _audio(job, config)
    media.seconds["audio"] = time.perf_counter() - started
    if job.video_path is None:
        media.video_note = "no video file"
        return media
    try:
        _face_track(media, detector, config)
    except NoVideo as error:
        media.video_note = str(error)
    return media


def _audio(job: ClipJob, config: TrackConfig) -> tuple[np.ndarray | None, str]:
    """The clip's audio from its audio file; when that is unusable, the video's own sound track, with a note."""
    if job.audio_path is None and job.video_path is None:
        return None, "no audio file"
    samples, problem = _usable_audio(job.audio_path or job.video_path, config)
    if samples is not None or job.audio_path is None or job.video_path is None or job.audio_path == job.video_path:
        return samples, problem
    fallback, fallback_problem = _usable_audio(job.video_path, config)
    if fallback is None:
        return None, f"{job.audio_path.name}: {problem}; the video's own track: {fallback_problem}"
    return fallback, f"{job.audio_path.name}: {problem}; used the video's own audio track"


def _usable_audio(source: Path, config: TrackConfig) -> tuple[np.ndarray | None, str]:
    try:
        samples, rate = read_audio(source)
    except NoAudio as error:
        return None, str(error)
    samples = resample(samples, rate)
    if len(samples) < config.min_audio_samples:
        return None, f"audio shorter than one analysis window ({len(samples)} samples)"
    if not np.isfinite(samples).all():
        return None, "audio has non-finite samples"
    return samples, ""


def _face_track(media: ClipMedia, detector, config: TrackConfig) -> None:
    frames, times, found, detected = [], [], [], []
    detect = 0.0
    previous = None
    tick = time.perf_counter()
    for index, (seconds, frame) in enumerate(decode_video(media.job.video_path)):
        frames.append(frame)
        times.append(seconds)
        box = None
        if index % config.detect_every == 0:
            detect_start = time.perf_counter()
            face = choose_face(large_enough(detector.detect(frame), frame.shape, config.min_face_size), previous)
            detect += time.perf_counter() - detect_start
            if face is not None:
                box = as_array(face)
                media.detection_scores.append(face.score)
        previous = box if box is not None else previous
        found.append(box if box is not None else np.zeros(4, np.float32))
        detected.append(box is not None)
    decode = time.perf_counter() - tick - detect
    if not frames:
        raise NoVideo("the video has no frames")
    crop_start = time.perf_counter()
    boxes, valid = fill_gaps(np.stack(found), np.array(detected), config.max_gap_frames)
    media.crops = np.stack([crop_face(frames[i], boxes[i], config.crop_size, config.crop_margin)
                            for i in np.flatnonzero(valid)]) if valid.any() else None
    media.valid, media.boxes, media.timestamps = valid, boxes, np.array(times)
    # The container's frame rate: FLV stores timestamps in whole milliseconds.
    span = times[-1] - times[0]
    media.fps = video_fps(media.job.video_path) or ((len(times) - 1) / span if span > 0 else 0.0)
    if not valid.any():
        media.video_note = "no face found"
    elif media.audio is not None and abs(media.duration - len(media.audio) / SAMPLE_RATE) > LENGTH_TOLERANCE_SECONDS:
        audio_seconds = len(media.audio) / SAMPLE_RATE
        media.video_note = f"video lasts {media.duration:.2f} s, audio {audio_seconds:.2f} s (truncated?)"
    media.seconds.update(decode=decode, detect=detect, crop=time.perf_counter() - crop_start)
