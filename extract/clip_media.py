"""The per-clip work of an extraction worker: read the audio, decode the video, follow the face
on the kept frames (``face_rate`` a second), crop it and, when it has an encoder, embed the crops
of a few clips together.
Runs in worker processes; on CPU the workers embed too, on a GPU the embedding runs batched in
the main process, and the log-mel always does (extract.engine and extract.spec.Extractor).

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
    FaceSelector,
    NoVideo,
    TrackCrops,
    Video,
    as_array,
    crop_face,
    grey_of,
    large_enough,
    luma_of,
    rotation_of,
    sampling_step,
    stretch_luma,
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
    detect_every: int  # run the detector on every k-th kept frame, interpolate between
    max_gap_frames: int  # kept frames
    crop_size: int
    crop_margin: float
    min_audio_samples: int  # shorter audio is unusable (less than one analysis window)
    min_face_size: float = 0.0  # smaller detections are ignored: a fraction of the frame's shorter side
    face_rate: float = 0.0  # kept frames a second (every round(fps / face_rate)-th frame); 0: every frame
    grey: bool = False  # crops are grey (H, W, 1), for an encoder that reads grey; else BGR
    face_select: str = "largest"  # which face the track starts with (extract.face_track.FaceSelector)


@dataclass
class ClipMedia:
    """What a worker hands back for one clip (before embedding and log-mel)."""

    job: ClipJob
    audio: np.ndarray | None = None  # 16 kHz mono float32
    audio_note: str = ""
    crops: np.ndarray | None = None  # (valid steps, size, size, 3) uint8 BGR, or (..., 1) grey
    embedding: np.ndarray | None = None  # (valid steps, dim) float32 when the worker embedded the crops
    audio_features: np.ndarray | None = None  # (frames, dim) float32 when the worker encoded the audio
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # per kept frame (video step)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # in the upright picture
    timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # of the kept frames, in the video's time
    fps: float = 0.0  # video steps a second: the video's frame rate over the sampling step
    frames: int = 0  # video frames decoded
    video_fps: float = 0.0  # the container's frame rate (0 when it gives none)
    rotation: int = 0  # counter-clockwise degrees the stored frames were turned to be upright (a display rotation)
    faces: int = 0  # the most faces one detection saw (the track follows one of them)
    detection_scores: list[float] = field(default_factory=list)  # of the detections the track took
    detection_frames: list[int] = field(default_factory=list)  # the kept frame of each of those detections
    video_note: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per part
    worker_peak_mb: float = 0.0  # the worker's own peak resident memory once it had processed this clip

    @property
    def failed(self) -> bool:
        return self.audio is None and not self.valid.any()

    @property
    def lengths_disagree(self) -> bool:
        """Audio and video of different lengths (LENGTH_TOLERANCE_SECONDS): one of them cut short."""
        return "truncated?" in self.video_note

    @property
    def duration(self) -> float:
        if self.frames and self.video_fps:
            return self.frames / self.video_fps
        if len(self.timestamps):
            return float(len(self.timestamps) / self.fps) if self.fps else float(self.timestamps[-1])
        return len(self.audio) / SAMPLE_RATE if self.audio is not None else 0.0


def process_clip(job: ClipJob, detector, config: TrackConfig) -> ClipMedia:
    """The clip's audio and face crops."""
    media = ClipMedia(job)
    started = time.perf_counter()
    media.audio, media.audio_note = clip_audio(job, config)
    media.seconds["audio"] = time.perf_counter() - started
    track_video(media, detector, config)
    return media


def track_video(media: ClipMedia, detector, config: TrackConfig) -> None:
    """The face crops of the clip's video (``media.job.video_path``), or why there are none."""
    if media.job.video_path is None:
        media.video_note = "no video file"
        return
    try:
        _face_track(media, detector, config)
    except NoVideo as error:
        media.video_note = str(error)


def embed_crops(clips: list[ClipMedia], encoder) -> None:
    """Replace the clips' crops with their embeddings (``encoder``: an extract.face_encoders.FaceEncoder),
    all the clips' crops in one batch; each clip is charged its share of the time."""
    with_crops = [clip for clip in clips if clip.crops is not None]
    if not with_crops:
        return
    tick = time.perf_counter()
    embedding = encoder.embed(np.concatenate([clip.crops for clip in with_crops]))
    share = (time.perf_counter() - tick) / len(with_crops)
    ends = np.cumsum([len(clip.crops) for clip in with_crops])
    for clip, rows in zip(with_crops, np.split(embedding, ends[:-1])):
        clip.embedding, clip.crops = rows, None
        clip.seconds["embed"] = share


def encode_audio(clips: list[ClipMedia], encoder) -> None:
    """Encode the clips' audio in the worker (``encoder``: an extract.audio_encoders.AudioEncoder whose
    features of a clip do not depend on the others); each clip is charged its share of the time."""
    with_audio = [clip for clip in clips if clip.audio is not None]
    if not with_audio:
        return
    tick = time.perf_counter()
    encoded = encoder([clip.audio for clip in with_audio])
    share = (time.perf_counter() - tick) / len(with_audio)
    for clip, features in zip(with_audio, encoded):
        clip.audio_features = features
        clip.seconds["audio_encoding"] = share


def clip_audio(job: ClipJob, config: TrackConfig) -> tuple[np.ndarray | None, str]:
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
    track = TrackCrops(config.max_gap_frames, lambda picture, box: _cut(picture, box, config))
    seconds = dict.fromkeys(("convert", "detect", "crop"), 0.0)
    started = time.perf_counter()
    with Video(media.job.video_path) as video:
        step = sampling_step(video.fps, config.face_rate)
        times = _follow_face(media, video, step, detector, config, track, seconds)
    seconds["decode"] = time.perf_counter() - started - sum(seconds.values())
    if not times:
        raise NoVideo("the video has no frames")
    tick = time.perf_counter()
    boxes, valid = track.finish()
    crops = track.crops  # one array already: no second copy of the crops
    media.crops = (crops[..., None] if config.grey else crops) if len(crops) else None
    seconds["crop"] += time.perf_counter() - tick
    media.valid, media.boxes, media.timestamps = valid, boxes, np.array(times)
    media.video_fps = video.fps
    # Without a container rate, the kept frames' times give it (FLV stores whole milliseconds).
    span = times[-1] - times[0]
    media.fps = video.fps / step if video.fps else ((len(times) - 1) / span if span > 0 else 0.0)
    if not valid.any():
        media.video_note = "no face found"
    elif media.audio is not None:
        note_lengths(media, len(media.audio) / SAMPLE_RATE)
    media.seconds.update(seconds)


def note_lengths(media: ClipMedia, audio_seconds: float) -> None:
    """Note a video whose face was found and whose length differs from its audio's: one was cut short."""
    if media.valid.any() and abs(media.duration - audio_seconds) > LENGTH_TOLERANCE_SECONDS:
        media.video_note = f"video lasts {media.duration:.2f} s, audio {audio_seconds:.2f} s (truncated?)"


def _follow_face(media: ClipMedia, video: Video, step: int, detector, config: TrackConfig, track: TrackCrops,
                 seconds: dict[str, float]) -> list[float]:
    """Decode every frame; convert every ``step``-th, look for the face on every ``detect_every``-th
    of those, and hand each to the track. The kept frames' times; the time of each part is added
    to ``seconds``."""
    times, selector = [], FaceSelector(config.face_select)
    for index, (at, frame) in enumerate(video.frames()):
        media.frames += 1
        if index % step:  # decoded (the codec needs every frame), never converted
            continue
        if not times:  # the stream's display rotation comes with every frame: the first kept one's is the clip's
            media.rotation = rotation_of(frame)
        started = time.perf_counter()
        # Grey crops are cut from the luma plane as it is and stretched to grey afterwards.
        picture = luma_of(frame) if config.grey else (video.pixels(frame), False)
        detecting = track.kept_frames % config.detect_every == 0
        seen = (_detector_picture(video, frame, None if config.grey else picture[0], detector.pixel_format)
                if detecting else None)
        converted = time.perf_counter()
        box = None
        if detecting:
            faces = large_enough(detector.detect_picture(seen), picture[0].shape, config.min_face_size)
            face = selector.choose(faces, picture[0].shape)
            if face is not None:
                box = as_array(face)
                media.detection_scores.append(face.score)
                media.detection_frames.append(len(times))
        detected = time.perf_counter()
        track.add(picture, box)  # crops the frames a detection settles
        seconds["convert"] += converted - started
        seconds["detect"] += detected - converted
        seconds["crop"] += time.perf_counter() - detected
        times.append(at)
    media.faces = selector.most_faces
    return times


def _cut(picture: tuple[np.ndarray, bool], box: np.ndarray, config: TrackConfig) -> np.ndarray:
    """The crop of a kept frame's picture (BGR, or luma with whether it is limited range)."""
    pixels, limited = picture
    crop = crop_face(pixels, box, config.crop_size, config.crop_margin)
    return stretch_luma(crop) if limited else crop


def _detector_picture(video: Video, frame, bgr: np.ndarray | None, pixel_format: str) -> np.ndarray:
    """The frame as the detector reads it; from the BGR picture already made, when there is one."""
    if pixel_format == "gray":
        return grey_of(frame)
    if pixel_format == "rgb24" and bgr is not None:
        return bgr[:, :, ::-1]
    return video.pixels(frame, pixel_format)


def media_between(media: ClipMedia, start: float, end: float, samples: np.ndarray | None,
                  min_audio_samples: int) -> ClipMedia:
    """The part of a clip's media from ``start`` to ``end`` seconds, as ``process_clip`` would give for
    a clip of that part alone: its audio ``samples`` (those from round(start * SAMPLE_RATE) to
    round(end * SAMPLE_RATE); None when the clip has no usable audio), and its kept frames with their
    crops (or embeddings), boxes, validity and detections. Its times stay the clip's."""
    part = ClipMedia(media.job, fps=media.fps, video_fps=media.video_fps, rotation=media.rotation,
                     faces=media.faces, video_note=media.video_note, audio_note=media.audio_note)
    if samples is not None:
        if len(samples) >= min_audio_samples:
            part.audio = samples
        else:
            part.audio_note = f"this segment's audio is shorter than one analysis window ({len(samples)} samples)"
    kept = np.flatnonzero((media.timestamps >= start) & (media.timestamps < end))
    first, last = (kept[0], kept[-1] + 1) if len(kept) else (0, 0)
    part.valid, part.boxes = media.valid[first:last], media.boxes[first:last]
    part.timestamps = media.timestamps[first:last]
    detections = [(frame, score) for frame, score in zip(media.detection_frames, media.detection_scores)
                  if first <= frame < last]
    part.detection_frames = [frame - first for frame, _ in detections]
    part.detection_scores = [score for _, score in detections]
    # Crops (or embeddings) are stored for the valid frames only, in order.
    rows = slice(int(media.valid[:first].sum()), int(media.valid[:last].sum()))
    part.crops = media.crops[rows] if media.crops is not None and rows.stop > rows.start else None
    part.embedding = media.embedding[rows] if media.embedding is not None else None
    part.frames = round((end - start) * media.video_fps) if media.video_fps and len(kept) else len(kept)
    if media.valid.any() and not part.valid.any():
        part.video_note = "no face in this segment"
    return part
