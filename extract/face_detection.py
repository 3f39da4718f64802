"""Face detectors behind one interface: frames in (BGR uint8, as OpenCV decodes), boxes out.

A detector is a class registered with ``@DETECTORS.register``: its ``name`` is the value of
``--detector``, its ``Options`` the options it takes, ``model_files`` the pinned files it loads
(none for none), and ``build(options, model_files)`` makes one from their local paths.

Each detector also takes a picture in the pixel format it works in (``pixel_format``, one of
PyAV's: ``rgb24`` for mediapipe, ``gray`` for Haar) with ``detect_picture``, so that extraction
converts a decoded frame once, straight to what the detector reads.

- ``MediaPipeCascade`` (the default): BlazeFace short range where it is sure of a face; else
  BlazeFace full range on the whole frame, then on overlapping tiles of it (``TiledSearch``), so
  that small faces in wide frames are found. Both models are pinned files (extract.model_files),
  run by mediapipe's Tasks FaceDetector.
- ``MediaPipeFaceDetector``: BlazeFace short range alone (the default before 2026-12-02).
- ``HaarFaceDetector``: OpenCV's bundled frontal-face Haar cascade (``alt2``, which finds more faces
  than ``default`` on our clips); no model download, a fallback.
- ``MtcnnFaceDetector``: MTCNN (extract.mtcnn) in PyTorch, with the facenet-pytorch wheel's weights:
  finds the small faces the cascade finds, but at about 25 times its cost.

Each loads its model once, when constructed, so a worker process builds one and reuses it.

mediapipe's native code logs a dozen lines to the process's stderr when a detector is made, used
and closed (LiteRT set-up notes, a memory alignment warning), in every worker, through the
progress bar. No environment variable or logging setting reaches them, so those calls run with
the stderr file descriptor pointed at /dev/null (two system calls each way, nothing beside the
2 ms a detection takes), unless ``NATIVE_LOGS_VARIABLE`` is set (the stages' ``--verbose``).

Importing mediapipe imports its drawing helpers, and they import matplotlib.pyplot: 0.38 of the
0.5 s the import takes, paid by every extraction worker and every prediction. It also imports every
task package (audio, text, decision, retrieval beside vision), and the audio tasks' microphone
recorder imports sounddevice, which searches the system for PortAudio: 0.11 of the 0.18 s left.
``import_mediapipe`` has each imported when code first uses it instead (``_DeferredModule``);
face detection neither draws nor uses the other tasks.
"""
from __future__ import annotations

import functools
import importlib
import math
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.config import option
from common.registry import NoOptions, Registry
from extract.model_files import (
    FACE_DETECTOR_FULL_RANGE,
    FACE_DETECTOR_SHORT_RANGE,
    MTCNN_ONET,
    MTCNN_PNET,
    MTCNN_RNET,
    ModelFileError,
    PinnedFile,
    model_path,
)
from extract.mtcnn import THRESHOLDS, Mtcnn

NATIVE_LOGS_VARIABLE = "AUXFORMER_NATIVE_LOGS"


@contextmanager
def native_logs_silenced() -> Iterator[None]:
    """Native code's writes to stderr go to /dev/null for the block (Python's own stderr is flushed first)."""
    if os.environ.get(NATIVE_LOGS_VARIABLE):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(_null_fd(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.cache
def _null_fd() -> int:
    return os.open(os.devnull, os.O_WRONLY)


# mediapipe.tasks.python imports every task package; face detection needs only ``vision``.
UNUSED_MEDIAPIPE_TASKS = tuple(f"mediapipe.tasks.python.{name}" for name in ("audio", "text", "decision", "retrieval"))


class _DeferredModule(types.ModuleType):
    """Stands in for a module not yet imported: the first attribute read imports the real one."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module(self.__name__), name)


def import_mediapipe() -> types.ModuleType:
    """mediapipe, with matplotlib, matplotlib.pyplot (unless they are imported already) and the
    task packages face detection does not use deferred (the module's docstring). The stand-ins
    are in sys.modules only while mediapipe is imported, so a later import of them anywhere gets
    the real module."""
    if "mediapipe" in sys.modules:
        import mediapipe

        return mediapipe
    stand_ins = {}
    if "matplotlib" not in sys.modules:
        pyplot = _DeferredModule("matplotlib.pyplot")
        package = _DeferredModule("matplotlib")
        package.pyplot = pyplot  # what ``import matplotlib.pyplot as plt`` reads off the package
        stand_ins.update({"matplotlib": package, "matplotlib.pyplot": pyplot})
    # mediapipe is not imported yet, so neither are its task packages.
    stand_ins.update((name, _DeferredModule(name)) for name in UNUSED_MEDIAPIPE_TASKS)
    sys.modules.update(stand_ins)
    try:
        import mediapipe
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return mediapipe


@dataclass(frozen=True)
class FaceBox:
    x: float  # left, pixels
    y: float  # top, pixels
    width: float
    height: float
    score: float  # detector confidence in [0, 1]; 1.0 where the detector gives none

    @property
    def area(self) -> float:
        return self.width * self.height


DETECTORS: Registry = Registry("face detector", ModelFileError)


@dataclass(frozen=True)
class MediaPipeOptions:
    # README, "Features", has the measurements this default comes from.
    min_face_score: float = option(0.55, "ignore detections of a lower confidence (mediapipe; Haar gives none)")

    def __post_init__(self) -> None:
        if not 0 <= self.min_face_score <= 1:  # also false for NaN
            raise ModelFileError(f"--min-face-score must be within 0..1, got {self.min_face_score}")


@DETECTORS.register
class MediaPipeFaceDetector:
    """BlazeFace short range: faces within about two metres of the camera."""

    name = "mediapipe"
    Options = MediaPipeOptions
    model_files: tuple[PinnedFile, ...] = (FACE_DETECTOR_SHORT_RANGE,)

    @classmethod
    def build(cls, options: MediaPipeOptions, model_files: tuple[Path, ...]) -> MediaPipeFaceDetector:
        return cls(model_files[0], options.min_face_score)

    def __init__(self, model_file: Path | None = None, min_score: float = 0.5):
        mediapipe = import_mediapipe()
        vision = mediapipe.tasks.vision
        self._image, self._srgb = mediapipe.Image, mediapipe.ImageFormat.SRGB
        options = vision.FaceDetectorOptions(
            base_options=mediapipe.tasks.BaseOptions(
                model_asset_path=str(model_file or model_path(FACE_DETECTOR_SHORT_RANGE))),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_score,
        )
        with native_logs_silenced():
            self._detector = vision.FaceDetector.create_from_options(options)

    pixel_format = "rgb24"

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        return self.detect_picture(frame_bgr[:, :, ::-1])

    def detect_picture(self, frame_rgb: np.ndarray) -> list[FaceBox]:
        """Faces in an (H, W, 3) uint8 RGB picture."""
        image = self._image(image_format=self._srgb, data=np.ascontiguousarray(frame_rgb))
        # Its alignment warning comes with whichever call first meets a misaligned internal buffer.
        with native_logs_silenced():
            result = self._detector.detect(image)
        return [FaceBox(d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width,
                        d.bounding_box.height, d.categories[0].score) for d in result.detections]

    def close(self) -> None:
        # The Tasks API needs an explicit close; left to interpreter exit it raises in its own teardown.
        with native_logs_silenced():
            self._detector.close()

    def __enter__(self) -> MediaPipeFaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@DETECTORS.register
class HaarFaceDetector:
    """OpenCV's frontal-face cascade, run on a downscaled grey frame for speed."""

    name = "haar"
    Options = NoOptions
    model_files: tuple[PinnedFile, ...] = ()
    CASCADE = "haarcascade_frontalface_alt2.xml"

    @classmethod
    def build(cls, options: NoOptions, model_files: tuple[Path, ...]) -> HaarFaceDetector:
        return cls()

    def __init__(self, downscale: float = 0.5, min_face_pixels: int = 48):
        self._cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / self.CASCADE))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV could not load {self.CASCADE}; reinstall opencv-contrib-python (make setup)")
        self._downscale = downscale
        self._min_size = int(min_face_pixels * downscale)

    pixel_format = "gray"

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        return self.detect_picture(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY))

    def detect_picture(self, grey: np.ndarray) -> list[FaceBox]:
        """Faces in an (H, W) uint8 grey picture."""
        small = cv2.resize(grey, None, fx=self._downscale, fy=self._downscale, interpolation=cv2.INTER_AREA)
        # No histogram equalisation: on a bright backdrop it flattens a dark face's features.
        found = self._cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=3,
                                               minSize=(self._min_size, self._min_size))
        s = 1.0 / self._downscale
        return [FaceBox(x * s, y * s, w * s, h * s, 1.0) for x, y, w, h in found]

    def close(self) -> None:
        """Nothing to release; present so both detectors are used the same way."""

    def __enter__(self) -> HaarFaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_detector(name: str, options, model_files: tuple[Path, ...]):
    """A face detector; a context manager (mediapipe's must be closed)."""
    return DETECTORS[name].build(options, model_files)


def square_tiles(height: int, width: int, side: int, overlap: float = 0.25) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of ``side``-pixel squares that cover a picture, neighbours sharing at
    least ``overlap`` of a side, so that a face a tile cuts in two is whole in the next one."""
    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = math.ceil((length - side) / (side * (1 - overlap))) + 1
        return [round(i * (length - side) / (count - 1)) for i in range(count)]
    return [(y, x) for y in starts(height) for x in starts(width)]


def merged(boxes: list[FaceBox], same_face_iou: float = 0.3) -> list[FaceBox]:
    """The boxes with those of one face, found in two overlapping tiles, kept once (the surest)."""
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: -b.score):
        if all(box_iou(box, other) < same_face_iou and not _inside(box, other) for other in kept):
            kept.append(box)
    return kept


def _intersection(a: FaceBox, b: FaceBox) -> float:
    width = max(0.0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    height = max(0.0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    return width * height


def box_iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    inter = _intersection(a, b)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _inside(a: FaceBox, b: FaceBox) -> bool:
    """Most of ``a`` lies within ``b``, or of ``b`` within ``a`` (a tile's cut of a face another tile saw whole)."""
    return _intersection(a, b) >= 0.6 * min(a.area, b.area)


class TiledSearch:
    """A detector that, when the whole picture shows no face, looks again on overlapping squares
    of it, level by level (tile sides as fractions of the picture's shorter side), until one level
    finds a face; boxes are mapped back to the whole picture. BlazeFace sees the picture scaled to
    its 128 (short range) or 192 (full range) pixel input, so a face under about a fifth of a wide
    frame is too small for it; within a tile it is not (README, "Features", has the measurements)."""

    def __init__(self, detector, levels: tuple[float, ...]):
        self._detector, self.levels = detector, levels
        self.pixel_format = detector.pixel_format

    def detect_picture(self, picture: np.ndarray) -> list[FaceBox]:
        faces = self._detector.detect_picture(picture)
        for fraction in self.levels:
            if faces:
                break
            faces = self._on_tiles(picture, fraction)
        return faces

    def _on_tiles(self, picture: np.ndarray, fraction: float) -> list[FaceBox]:
        height, width = picture.shape[:2]
        side = max(1, round(min(height, width) * fraction))
        if side >= max(height, width):
            return []  # one tile would be the whole picture, already searched
        found = []
        for y, x in square_tiles(height, width, side):
            found += [FaceBox(box.x + x, box.y + y, box.width, box.height, box.score)
                      for box in self._detector.detect_picture(picture[y:y + side, x:x + side])]
        return merged(found)

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        picture = frame_bgr[:, :, ::-1] if self.pixel_format == "rgb24" else cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        return self.detect_picture(picture)

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> TiledSearch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tile_sides(text: str) -> tuple[float, ...]:
    try:
        sides = tuple(float(side) for side in text.split(",") if side.strip())
    except ValueError:
        sides = (-1.0,)
    if not all(0.1 <= side <= 1 for side in sides):
        raise ModelFileError(f"--tiles must be tile sides within 0.1..1 of the frame's shorter side, comma-separated "
                             f"(e.g. 1,0.5), or empty for none; got {text!r}")
    return sides


@dataclass(frozen=True)
class CascadeOptions:
    # README, "Features", has the measurements these defaults come from.
    sure_face_score: float = option(0.85, "a short-range detection at least this sure is taken as it is; below it, "
                                          "the full-range model looks (mediapipe-cascade)")
    full_range_min_score: float = option(0.6, "ignore full-range detections of a lower confidence (mediapipe-cascade)")
    tiles: str = option("1,0.5", "when the whole frame shows no face, the full-range model looks again on "
                                 "overlapping squares of these sides (fractions of the frame's shorter side), "
                                 "level by level; empty: never (mediapipe-cascade)")

    def __post_init__(self) -> None:
        for name in ("sure_face_score", "full_range_min_score"):
            if not 0 <= getattr(self, name) <= 1:  # also false for NaN
                raise ModelFileError(f"--{name.replace('_', '-')} must be within 0..1, got {getattr(self, name)}")
        _tile_sides(self.tiles)


@DETECTORS.register
class MediaPipeCascade:
    """BlazeFace short range where it is sure; else full range, on the whole frame, then on tiles.

    The short-range model is the faster (2.8 against 6.7 ms a call on the demo's frames) and
    sure of the near faces most clips hold, but it misses faces under about a fifth of the frame
    and calls cats and cups faces at up to 0.8; the full-range model finds faces down to a
    twentieth of the frame's height within tiles, and scored nothing without a face above 0.58
    (README, "Features")."""

    name = "mediapipe-cascade"
    Options = CascadeOptions
    model_files: tuple[PinnedFile, ...] = (FACE_DETECTOR_SHORT_RANGE, FACE_DETECTOR_FULL_RANGE)
    pixel_format = "rgb24"

    @classmethod
    def build(cls, options: CascadeOptions, model_files: tuple[Path, ...]) -> MediaPipeCascade:
        return cls(options, *(model_files or ()))

    def __init__(self, options: CascadeOptions, short_range: Path | None = None, full_range: Path | None = None):
        self._short = MediaPipeFaceDetector(short_range or model_path(FACE_DETECTOR_SHORT_RANGE),
                                            options.sure_face_score)
        full = MediaPipeFaceDetector(full_range or model_path(FACE_DETECTOR_FULL_RANGE), options.full_range_min_score)
        self._full = TiledSearch(full, _tile_sides(options.tiles))

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        return self.detect_picture(frame_bgr[:, :, ::-1])

    def detect_picture(self, frame_rgb: np.ndarray) -> list[FaceBox]:
        return self._short.detect_picture(frame_rgb) or self._full.detect_picture(frame_rgb)

    def close(self) -> None:
        self._short.close()
        self._full.close()

    def __enter__(self) -> MediaPipeCascade:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class MtcnnOptions:
    mtcnn_min_face: int = option(20, "the smallest face MTCNN looks for, in pixels: its image pyramid starts where "
                                     "such a face fills P-Net's 12-pixel window; smaller costs more (mtcnn)")
    mtcnn_min_score: float = option(THRESHOLDS[2], "ignore MTCNN detections O-Net scores lower (mtcnn)")

    def __post_init__(self) -> None:
        # Under 12 pixels the pyramid's first level would be the frame enlarged: more cost, no gain
        # on the faces of the size extraction keeps (--min-face-size).
        if not 12 <= self.mtcnn_min_face <= 10_000:
            raise ModelFileError(f"--mtcnn-min-face must be within 12..10000 pixels, got {self.mtcnn_min_face}")
        if not 0 <= self.mtcnn_min_score <= 1:  # also false for NaN
            raise ModelFileError(f"--mtcnn-min-score must be within 0..1, got {self.mtcnn_min_score}")


@DETECTORS.register
class MtcnnFaceDetector:
    """MTCNN (Zhang et al. 2016; extract.mtcnn): P-Net over an image pyramid, R-Net and O-Net on its
    proposals, in PyTorch on the CPU (one thread in an extraction worker).

    Beside the default (mediapipe-cascade), by ``python -m bench.detector_recall --candidates
    short,cascade,mtcnn --demo-clips 40`` (2026-12-02): it found every face of the photo clips, down
    to 5% of the frame's height (the cascade 94% of those, 87% at 7.5%, all above), and a face on
    995 of 999 demo frames (the cascade on all); a face on 1 of 30 coffee frames, none on the cat
    (the cascade: none). Its boxes are taller than BlazeFace's square ones (brow to chin), so they
    overlap the bench's true boxes, which are BlazeFace's, by 0.74 (the cascade 0.74 to 0.87). But it
    costs 118 ms a call on 640x480, 272 on 1280x720 and 52 on the demo's frames, against the
    cascade's 22, 37 and 2.1: the image pyramid P-Net slides over, from 20-pixel faces up, is most of it."""

    name = "mtcnn"
    Options = MtcnnOptions
    model_files: tuple[PinnedFile, ...] = (MTCNN_PNET, MTCNN_RNET, MTCNN_ONET)
    pixel_format = "rgb24"

    @classmethod
    def build(cls, options: MtcnnOptions, model_files: tuple[Path, ...]) -> MtcnnFaceDetector:
        return cls(options, model_files or tuple(model_path(pinned) for pinned in cls.model_files))

    def __init__(self, options: MtcnnOptions, model_files: tuple[Path, ...]):
        self._cascade = Mtcnn(model_files, options.mtcnn_min_face, options.mtcnn_min_score)

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        return self.detect_picture(frame_bgr[:, :, ::-1])

    def detect_picture(self, frame_rgb: np.ndarray) -> list[FaceBox]:
        """Faces in an (H, W, 3) uint8 RGB picture."""
        return [FaceBox(float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(score))
                for x1, y1, x2, y2, score in self._cascade.detect(frame_rgb)]

    def close(self) -> None:
        """Nothing to release (the networks are plain PyTorch modules); present so detectors are used alike."""

    def __enter__(self) -> MtcnnFaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
