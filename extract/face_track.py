"""One face per clip: decode the video, detect faces, follow one face, crop it.

The face followed is the most confident detection on the first frame that has one (ties go to
the larger face); on later detection frames, the detection overlapping the previous box most
(the largest if none overlaps). Detection may run on every k-th frame only; boxes of frames in
between, and of frames where detection failed, are interpolated linearly from the nearest
detections when at most ``max_gap_frames`` frames lie between them (and held for at most that
many frames before the first and after the last detection); other frames are marked invalid (no
usable face) and get no crop.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from extract.face_detection import FaceBox


class NoVideo(Exception):
    """The file has no decodable video."""


def decode_video(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, BGR frame) for every frame; NoVideo when nothing can be decoded."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise NoVideo(f"not a readable video: {error}") from None
    with container:
        if not container.streams.video:
            raise NoVideo("the file has no video stream")
        stream = container.streams.video[0]
        start = stream.start_time or 0
        try:
            for frame in container.decode(stream):
                seconds = float((frame.pts - start) * stream.time_base) if frame.pts is not None else float("nan")
                yield seconds, frame.to_ndarray(format="bgr24")
        except av.error.FFmpegError as error:
            # A truncated file: keep the frames decoded so far, as the caller counts them.
            if not _is_truncation(error):
                raise NoVideo(f"video not decodable: {error}") from None


def _is_truncation(error: Exception) -> bool:
    return isinstance(error, (av.error.EOFError, av.error.InvalidDataError))


def video_fps(path: Path) -> float:
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else 0.0


def choose_face(boxes: list[FaceBox], previous: np.ndarray | None) -> FaceBox | None:
    """The detection that continues the track, or starts it."""
    if not boxes:
        return None
    if previous is None:
        return max(boxes, key=lambda b: (round(b.score, 2), b.area))
    overlaps = [_iou(previous, as_array(b)) for b in boxes]
    return boxes[int(np.argmax(overlaps))] if max(overlaps) > 0 else max(boxes, key=lambda b: b.area)


def large_enough(boxes: list[FaceBox], frame_shape: tuple[int, ...], min_size: float) -> list[FaceBox]:
    """The detections whose shorter side is at least ``min_size`` of the frame's shorter side."""
    floor = min_size * min(frame_shape[:2])
    return [box for box in boxes if min(box.width, box.height) >= floor]


def as_array(box: FaceBox) -> np.ndarray:
    return np.array([box.x, box.y, box.width, box.height], dtype=np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def fill_gaps(boxes: np.ndarray, detected: np.ndarray, max_gap_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate boxes between detections no further than ``max_gap_frames`` from a frame."""
    frames = len(boxes)
    filled = np.full((frames, 4), np.nan, dtype=np.float32)
    valid = np.zeros(frames, dtype=bool)
    anchors = np.flatnonzero(detected)
    if len(anchors) == 0:
        return filled, valid
    index = np.arange(frames)
    position = np.searchsorted(anchors, index)
    before = anchors[np.clip(position - 1, 0, len(anchors) - 1)]
    after = anchors[np.clip(position, 0, len(anchors) - 1)]
    before = np.where(before <= index, before, after)
    after = np.where(after >= index, after, before)
    at_edge = before == after  # before the first or after the last detection
    span = np.maximum(after - before, 1)
    weight = ((index - before) / span)[:, None]
    filled[:] = (1 - weight) * boxes[before] + weight * boxes[after]
    edge_distance = np.minimum(np.abs(index - before), np.abs(after - index))
    valid = detected | np.where(at_edge, edge_distance <= max_gap_frames, after - before <= max_gap_frames + 1)
    filled[~valid] = np.nan
    return filled, valid


def crop_face(frame: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    """A square crop around the box, ``margin`` wider on each side, resized to size x size.
    Parts outside the frame repeat the border, so a face at the edge keeps its place in the crop."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    scale = size / side
    # An affine warp crops, pads and resizes in one pass.
    matrix = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]], dtype=np.float32)
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
