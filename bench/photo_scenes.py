"""Video clips made from real photographs (scikit-image's, pinned in extract.model_files), with the
true face boxes: people at any size in frames of any shape, and scenes without a face.

A person is the astronaut photo's head and shoulders; in each clip it drifts and grows a little
from frame to frame, as a person on camera does, over a background of the coffee photo; the
second and third people are mirrored and lit differently. A clip is written as H.264 (what
cameras and phones record) and read back by the pipeline's own decoder.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from extract.model_files import ASTRONAUT_PHOTO, CAT_PHOTO, COFFEE_PHOTO, model_path

# The astronaut's face in the photo (x, y, width, height): BlazeFace short range's box on the whole
# photo (score 0.92); the full-range model's box is 103 pixels wide and 14 higher.
ASTRONAUT_FACE = (177.0, 82.0, 95.0, 95.0)
# The part of the photo a person is cut from, in face boxes around the face: head and shoulders.
_PERSON = (-0.6, -0.75, 2.2, 2.6)  # left, top, width, height
FPS = 10


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    face_height: float = 0.2  # of the frame's height
    people: int = 1  # 0: no face (the ``nobody`` photo instead)
    nobody: str = "cat"  # cat or coffee, for people=0
    frames: int = 10  # at FPS a second

    @property
    def name(self) -> str:
        what = f"{self.people}x{self.face_height:g}" if self.people else self.nobody
        return f"{self.width}x{self.height}-{what}"


@functools.cache
def _photo(pinned) -> np.ndarray:
    """The photo, read once a process (every scene draws on the same three; none is changed in place)."""
    return cv2.imread(str(model_path(pinned)))


def _person() -> tuple[np.ndarray, np.ndarray]:
    """The cut-out person and the face box within it."""
    photo = _photo(ASTRONAUT_PHOTO)
    x, y, w, h = ASTRONAUT_FACE
    left, top = max(0, round(x + _PERSON[0] * w)), max(0, round(y + _PERSON[1] * h))
    right = min(photo.shape[1], round(x + (_PERSON[0] + _PERSON[2]) * w))
    bottom = min(photo.shape[0], round(y + (_PERSON[1] + _PERSON[3]) * h))
    return photo[top:bottom, left:right], np.array([x - left, y - top, w, h], np.float32)


def _variant(person: np.ndarray, face: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-th person of a scene: every other one mirrored, each lit a little differently."""
    if index % 2:
        person = person[:, ::-1]
        face = np.array([person.shape[1] - face[0] - face[2], face[1], face[2], face[3]], np.float32)
    light = (1.0, 0.8, 1.15)[index % 3]
    return np.clip(person.astype(np.float32) * light, 0, 255).astype(np.uint8), face


def _paste(frame: np.ndarray, picture: np.ndarray, x: int, y: int) -> None:
    """``picture`` drawn with its top-left corner at (x, y), clipped to the frame."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + picture.shape[1], width), min(y + picture.shape[0], height)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = picture[y0 - y:y1 - y, x0 - x:x1 - x]


def scene_frames(scene: Scene) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The clip's frames (BGR) and, per frame, the true face boxes ((faces, 4): x, y, width, height)."""
    background = cv2.resize(_photo(COFFEE_PHOTO), (scene.width, scene.height), interpolation=cv2.INTER_AREA)
    frames, boxes = [], []
    if not scene.people:
        return _nobody_frames(scene), [np.zeros((0, 4), np.float32)] * scene.frames
    person, face = _person()
    for step in range(scene.frames):
        frame = (background * 0.7).astype(np.uint8)
        growth = 1 + 0.03 * step / scene.frames  # a slow step towards the camera
        scale = scene.face_height * scene.height / face[3] * growth
        found = []
        for index in range(scene.people):
            picture, box = _variant(person, face, index)
            picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            centre_x = scene.width * (index + 1) / (scene.people + 1) + scene.width * 0.01 * step * 10 / scene.frames
            x = round(centre_x - (box[0] + box[2] / 2) * scale)
            y = round(scene.height * 0.4 - (box[1] + box[3] / 2) * scale)
            _paste(frame, picture, x, y)
            found.append([x + box[0] * scale, y + box[1] * scale, box[2] * scale, box[3] * scale])
        frames.append(frame)
        boxes.append(np.array(found, np.float32))
    return frames, boxes


def _nobody_frames(scene: Scene) -> list[np.ndarray]:
    """The cat (or the coffee) filling the frame, with a slow zoom."""
    photo = _photo(CAT_PHOTO if scene.nobody == "cat" else COFFEE_PHOTO)
    frames = []
    for step in range(scene.frames):
        zoom = 1 + 0.3 * step / scene.frames
        scale = max(scene.width / photo.shape[1], scene.height / photo.shape[0]) * zoom
        picture = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        y, x = (picture.shape[0] - scene.height) // 2, (picture.shape[1] - scene.width) // 2
        frames.append(np.ascontiguousarray(picture[y:y + scene.height, x:x + scene.width]))
    return frames


def fits(scene: Scene) -> bool:
    """Whether every person's face is whole in the frame, no one covering another's."""
    if not scene.people:
        return True
    face_width = scene.face_height * scene.height * ASTRONAUT_FACE[2] / ASTRONAUT_FACE[3]
    spacing = scene.width / (scene.people + 1)  # between the centres of neighbours, and of the outer ones and the edges
    return face_width <= spacing * 1.6 and (scene.people == 1 or _PERSON[2] * face_width <= spacing)


def write_clip(frames: list[np.ndarray], path: Path) -> Path:
    """The frames as an H.264 MP4 (yuv420p, cut to even sizes)."""
    height, width = (frames[0].shape[0] // 2) * 2, (frames[0].shape[1] // 2) * 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20"}
        for picture in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[:height, :width]), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
