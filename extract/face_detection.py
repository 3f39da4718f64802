"""Face detectors behind one interface: frames in (BGR uint8, as OpenCV decodes), boxes out.

A detector is a class registered with ``@DETECTORS.register``: its ``name`` is the value of
``--detector``, its ``Options`` the options it takes, ``model_file`` the pinned file it loads
(None for none), and ``build(options, model_file)`` makes one.

Each detector also takes a picture in the pixel format it works in (``pixel_format``, one of
PyAV's: ``rgb24`` for mediapipe, ``gray`` for Haar) with ``detect_picture``, so that extraction
converts a decoded frame once, straight to what the detector reads.

- ``MediaPipeFaceDetector``: mediapipe's Tasks FaceDetector with the BlazeFace short-range model,
  a pinned file (extract.model_files). The default.
- ``HaarFaceDetector``: OpenCV's bundled frontal-face Haar cascade (``alt2``, which finds more faces
  than ``default`` on our clips); no model download, a fallback.

Both load their model once, when constructed, so a worker process builds one and reuses it.

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
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, ModelFileError, PinnedFile, model_path

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
    model_file: PinnedFile | None = FACE_DETECTOR_SHORT_RANGE

    @classmethod
    def build(cls, options: MediaPipeOptions, model_file: Path | None) -> MediaPipeFaceDetector:
        return cls(model_file, options.min_face_score)

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
    model_file: PinnedFile | None = None
    CASCADE = "haarcascade_frontalface_alt2.xml"

    @classmethod
    def build(cls, options: NoOptions, model_file: Path | None) -> HaarFaceDetector:
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


def open_detector(name: str, options, model_file: Path | None):
    """A face detector; a context manager (mediapipe's must be closed)."""
    return DETECTORS[name].build(options, model_file)
