"""One face per clip: decode the video, detect faces, follow one face, crop it.

One person is followed for the whole clip (``FaceSelector``): on the first frame with a face,
the largest face (``--face-select largest``, the default) or the one nearest the picture's centre
(``central``); on later detection frames, the detection that continues the track: the one
overlapping most the box where the face would be now (the last box moved as the face last moved),
else the nearest within ``REACH`` box widths of it. A detection neither overlapping nor near, or of
twice or half the track's size (``SIZE_CHANGE``), is another person (or not a face), never taken:
the frame has no face. Detection may run on every k-th frame only; boxes of frames in
between, and of frames where detection failed, are interpolated linearly from the nearest
detections when at most ``max_gap_frames`` frames lie between them (and held for at most that
many frames before the first and after the last detection); other frames are marked invalid (no
usable face) and get no crop.

Faces may be followed on a sample of the frames only (``sampling_step``: every n-th frame, n from
the video's frame rate and the wanted rate): every frame is decoded, as the codec requires, but
only the kept frames are converted to pixels, and detection and interpolation count kept frames.

Pictures are upright, as a player shows them: a frame stored turned (phones store portrait video
sideways, with a display rotation in the container) is turned back when it is converted, so boxes
are in the upright picture's coordinates.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from extract.face_detection import FaceBox, box_iou


class NoVideo(Exception):
    """The file has no decodable video."""


class Video:
    """A video file's first video stream: its frame rate and its frames as decoded, unconverted.

    Converting a frame to pixels costs three times what decoding it does (README, "Performance"),
    so ``frames`` yields PyAV frames, and callers convert only those they use (``pixels``,
    ``grey_of``, ``luma_of``: upright pictures). NoVideo when the file cannot be opened or has no
    video stream.
    """

    def __init__(self, path: Path):
        try:
            self._container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as error:
            raise NoVideo(f"not a readable video: {error}") from None
        if not self._container.streams.video:
            self._container.close()
            raise NoVideo("the file has no video stream")
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate
        self.fps = float(rate) if rate else 0.0  # 0 when the container does not say
        self._converters: dict[str, VideoReformatter] = {}

    def pixels(self, frame: av.VideoFrame, pixel_format: str = "bgr24") -> np.ndarray:
        """The upright frame as an array in ``pixel_format`` (PyAV's name: bgr24, rgb24, gray).

        One converter per format serves the whole video: ``frame.to_ndarray`` sets up a new
        swscale context for every frame, which took four times as long as the conversion itself
        (README, "Performance")."""
        converter = self._converters.get(pixel_format)
        if converter is None:
            converter = self._converters[pixel_format] = VideoReformatter()
        return upright(converter.reformat(frame, format=pixel_format).to_ndarray(), frame)

    def frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """(time in seconds, frame) for every frame; a truncated file ends early, without an error."""
        stream = self._stream
        start = stream.start_time or 0
        try:
            for frame in self._container.decode(stream):
                yield float((frame.pts - start) * stream.time_base) if frame.pts is not None else float("nan"), frame
        except av.error.FFmpegError as error:
            # A truncated file: keep the frames decoded so far, as the caller counts them.
            if not _is_truncation(error):
                raise NoVideo(f"video not decodable: {error}") from None

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode_video(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, upright BGR frame) for every frame; NoVideo when nothing can be decoded."""
    with Video(path) as video:
        for seconds, frame in video.frames():
            yield seconds, video.pixels(frame)


# Counter-clockwise quarter turns as cv2.rotate does them: in one pass, ten times as fast as copying
# numpy's rotated view of a BGR picture.
_TURNS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0 to 3) that show the frame upright.

    ``frame.rotation`` is the display rotation of the frame's display matrix (the container's
    tag), counter-clockwise in degrees as ffmpeg reads it, and cut to whole degrees by PyAV
    (``int()``), so a quarter turn stored in fixed point can read 89: the nearest quarter turn is
    taken. Reading it costs about 0.1 microseconds a frame, nothing beside a conversion (0.5 ms)."""
    return round(frame.rotation / 90) % 4


def rotation_of(frame: av.VideoFrame) -> int:
    """The rotation ``upright`` applies to the frame, in counter-clockwise degrees: 0, 90, 180 or -90."""
    return (0, 90, 180, -90)[quarter_turns(frame)]


def upright(picture: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """A picture of ``frame`` (pixels or a plane of it) as a player shows it; the picture itself
    when the frame is stored upright."""
    turns = quarter_turns(frame)
    return cv2.rotate(picture, _TURNS[turns]) if turns else picture


def sampling_step(fps: float, rate: float) -> int:
    """Keep every n-th frame to follow the face about ``rate`` times a second (0: every frame)."""
    if rate <= 0 or fps <= 0:
        return 1
    return max(1, round(fps / rate))


# Limited-range ("TV") luma, 16..235, stretched to 0..255 as swscale does for a grey picture.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_LIMITED_RANGE_YUV = {"yuv420p", "yuv422p", "yuv444p", "yuv411p", "yuv410p", "yuv440p", "nv12", "nv21"}
_FULL_RANGE_YUV = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"}


def luma_of(frame: av.VideoFrame) -> tuple[np.ndarray, bool]:
    """The upright frame's luma plane as an (H, W) uint8 array, and whether it is limited range
    (16..235: ``stretch_luma`` gives the grey values); a frame without one comes grey, in full
    range, from swscale. The plane of a frame stored upright is a view, without a copy (one stored
    turned is turned, one byte a pixel): cropping it and stretching the crop costs a fraction of
    converting the whole frame."""
    name = frame.format.name
    full = name in _FULL_RANGE_YUV or (name in _LIMITED_RANGE_YUV and frame.color_range == 2)  # AVCOL_RANGE_JPEG
    if not full and name not in _LIMITED_RANGE_YUV:
        return upright(frame.to_ndarray(format="gray"), frame), False
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:frame.height, :frame.width]
    return upright(luma, frame), not full


def stretch_luma(luma: np.ndarray) -> np.ndarray:
    """Limited-range luma as grey values 0..255, as swscale's grey conversion gives them."""
    return cv2.LUT(luma, _LIMITED_TO_FULL)


def grey_of(frame: av.VideoFrame) -> np.ndarray:
    """The upright frame as an (H, W) uint8 grey picture: from its luma plane when it has one (the
    values swscale's grey conversion gives, without its cost), else through swscale."""
    luma, limited = luma_of(frame)
    return stretch_luma(luma) if limited else np.ascontiguousarray(luma)


def _is_truncation(error: Exception) -> bool:
    return isinstance(error, (av.error.EOFError, av.error.InvalidDataError))


def video_fps(path: Path) -> float:
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else 0.0


FACE_SELECTIONS = ("largest", "central")
# How far, in the track's box widths, a face may have moved between two detections and still be the
# one followed: detections are about a second apart, and a person who turns or leans moves about one.
REACH = 1.5
# Nor is a detection of twice or half the track's size: between detections (about a second apart)
# a face does not grow or shrink that much, while a detector's box around a head and shoulders does.
SIZE_CHANGE = 2.0


class FaceSelector:
    """Chooses, detection by detection, the face of the one person a clip's track follows."""

    def __init__(self, rule: str = "largest"):
        if rule not in FACE_SELECTIONS:
            raise ValueError(f"unknown face selection {rule!r}; choose one of {', '.join(FACE_SELECTIONS)}")
        self.rule = rule
        self.last: np.ndarray | None = None
        self.motion = np.zeros(2, np.float32)  # the box's last move between detections, x and y
        self.most_faces = 0  # the most faces one detection saw

    def choose(self, boxes: list[FaceBox], frame_shape: tuple[int, ...]) -> FaceBox | None:
        self.most_faces = max(self.most_faces, len(boxes))
        if not boxes:
            return None
        face = self._start(boxes, frame_shape) if self.last is None else self._continue(boxes)
        if face is not None:
            box = as_array(face)
            if self.last is not None:
                self.motion = _centre(box) - _centre(self.last)
            self.last = box
        return face

    def _start(self, boxes: list[FaceBox], frame_shape: tuple[int, ...]) -> FaceBox:
        if self.rule == "largest":
            return max(boxes, key=lambda b: (b.area, b.score))
        middle = np.array([frame_shape[1] / 2, frame_shape[0] / 2], np.float32)
        return min(boxes, key=lambda b: (float(np.linalg.norm(_centre(as_array(b)) - middle)), -b.area))

    def _continue(self, boxes: list[FaceBox]) -> FaceBox | None:
        expected = self.last.copy()
        expected[:2] += self.motion
        boxes = [b for b in boxes if 1 / SIZE_CHANGE <= b.width / expected[2] <= SIZE_CHANGE]
        if not boxes:
            return None
        overlaps = [box_iou(FaceBox(*expected, 1.0), b) for b in boxes]
        if max(overlaps) > 0:
            return boxes[int(np.argmax(overlaps))]
        distances = [float(np.linalg.norm(_centre(as_array(b)) - _centre(expected))) for b in boxes]
        nearest = int(np.argmin(distances))
        return boxes[nearest] if distances[nearest] <= REACH * expected[2] else None


def _centre(box: np.ndarray) -> np.ndarray:
    return box[:2] + box[2:] / 2


def large_enough(boxes: list[FaceBox], frame_shape: tuple[int, ...], min_size: float) -> list[FaceBox]:
    """The detections whose shorter side is at least ``min_size`` of the frame's shorter side."""
    floor = min_size * min(frame_shape[:2])
    return [box for box in boxes if min(box.width, box.height) >= floor]


def as_array(box: FaceBox) -> np.ndarray:
    return np.array([box.x, box.y, box.width, box.height], dtype=np.float32)


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


# Room for this many crops at first (a minute at 4 face steps a second), doubled when full.
CROPS_FIRST_ROOM = 256


class TrackCrops:
    """The crops of one face track, cut while the video is read, with the boxes ``fill_gaps`` gives
    for the whole track.

    A kept frame's box is settled by the next detection, or by the video's end; its picture
    (``add``) is held only until then. A frame more than ``max_gap_frames`` from a detection can
    have no box, so at most ``max_gap_frames`` + 1 pictures are held at a time, and a worker's
    memory stays flat however long the clip: holding every kept frame took about 1 GB for three
    minutes of 720p video.

    The crops go into one array grown in place (``ndarray.resize``: glibc moves a large block's
    pages with mremap instead of copying them), not a list of small arrays stacked at the end,
    which held them twice over: 4 face steps a second of 60x60 crops are 52 MB an hour.
    """

    def __init__(self, max_gap_frames: int, cut: Callable[[Any, np.ndarray], np.ndarray]):
        self._max_gap = max_gap_frames
        self._cut = cut  # (picture, box) -> crop
        self._found: list[np.ndarray] = []
        self._detected: list[bool] = []
        self._held: dict[int, Any] = {}  # kept frame -> picture, in order, while its box is unsettled
        self._last_detection: int | None = None
        self._store: np.ndarray | None = None  # the crops of the valid frames settled so far, in order, then room
        self._count = 0
        self._finished = False

    @property
    def crops(self) -> np.ndarray:
        """The crops of the valid frames, in order (empty for none); once ``finish`` has been called,
        since growing the store would leave a view of it pointing at freed memory."""
        if not self._finished:
            raise RuntimeError("TrackCrops.crops is read after finish()")
        return self._store[:self._count] if self._store is not None else np.zeros((0, 0, 0), np.uint8)

    @property
    def kept_frames(self) -> int:
        return len(self._found)

    @property
    def held(self) -> int:
        return len(self._held)

    def add(self, picture: Any, box: np.ndarray | None) -> None:
        """The next kept frame, with its detected box or None."""
        index = len(self._found)
        self._found.append(box if box is not None else np.zeros(4, np.float32))
        self._detected.append(box is not None)
        if box is not None:
            self._held[index] = picture
            self._settle(next(iter(self._held)) if self._last_detection is None else self._last_detection)
            self._last_detection = index
        elif self._last_detection is None:
            self._held[index] = picture
            # The first detection comes at index + 1 at the earliest: this one is too far before it.
            self._held.pop(index - self._max_gap, None)
        elif index - self._last_detection <= self._max_gap:
            self._held[index] = picture

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Crop what the video's end settles; the track's boxes and which kept frames are valid."""
        if self._last_detection is not None and self._held:
            self._settle(self._last_detection)
        self._held.clear()
        self._finished = True
        if not self._found:
            return np.zeros((0, 4), np.float32), np.zeros(0, bool)
        return fill_gaps(np.stack(self._found), np.array(self._detected), self._max_gap)

    def _settle(self, first: int) -> None:
        """Crop the held frames, all of whose boxes the frames from ``first`` on decide: the nearest
        detections on either side of each lie within them, so ``fill_gaps`` over them alone gives
        each the box (and validity) it gives over the whole track."""
        boxes, valid = fill_gaps(np.stack(self._found[first:]), np.array(self._detected[first:]), self._max_gap)
        for index, picture in self._held.items():
            if valid[index - first]:
                self._keep(self._cut(picture, boxes[index - first]))
        self._held.clear()

    def _keep(self, crop: np.ndarray) -> None:
        if self._store is None:
            self._store = np.empty((CROPS_FIRST_ROOM, *crop.shape), crop.dtype)
        elif self._count == len(self._store):
            self._store.resize((2 * len(self._store), *crop.shape), refcheck=False)  # no view of it exists yet
        self._store[self._count] = crop
        self._count += 1


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
