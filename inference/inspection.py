"""What the model saw of a clip, as one picture (``make inspect``).

Reads a video and the extractor that made (or would make) its features; with a run, the run's
Predictor. Writes one PNG: a contact sheet of kept frames sampled over the clip with the box the
face track followed drawn in green and every other face the detector found there in red, the
crops the face encoder receives (up to ``MAX_CROPS``, in time order), and with a run the class
probabilities it predicts for the clip.

The track is the one extraction makes (extract.clip_media.process_clip, the same detector and
options); the other faces come from the detector run again on the sampled frames, so they are
what the track could have followed and did not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the machines this runs on
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common import files  # noqa: E402
from extract.clip_media import ClipJob, ClipMedia, process_clip  # noqa: E402
from extract.face_detection import FaceBox  # noqa: E402
from extract.face_track import decode_video  # noqa: E402
from extract.spec import Extractor  # noqa: E402

MAX_CROPS = 16
FOLLOWED, OTHER = (0, 200, 0), (0, 0, 230)  # BGR: the track's box, other faces'


@dataclass
class Inspection:
    """What the picture shows: the sampled kept frames, and the boxes drawn on each."""

    path: Path
    steps: list[int]  # the kept frames (video steps) sampled
    followed: list[np.ndarray | None] = field(default_factory=list)  # the track's box on each, None: no face
    others: list[list[FaceBox]] = field(default_factory=list)  # the other faces found on each
    crops: int = 0  # crops shown
    probabilities: dict[str, float] = field(default_factory=dict)


def inspect_clip(video: Path, extractor: Extractor, out: Path, predictor=None, frames: int = 8) -> Inspection:
    """Write the clip's picture to ``out``; ``predictor`` (an inference.predictor.Predictor) adds its
    class probabilities."""
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob(video.stem, None, video), detector, extractor.track)
        steps = _sampled_steps(len(media.valid), frames)
        pictures = _kept_pictures(video, media, steps)
        inspection = Inspection(out, steps)
        for step, picture in zip(steps, pictures):
            followed = media.boxes[step] if media.valid[step] else None
            others = [box for box in detector.detect(picture) if followed is None or not _same(box, followed)]
            inspection.followed.append(followed)
            inspection.others.append(others)
        if predictor is not None:
            inspection.probabilities = predictor.predict(video, detector).probabilities
    crops = _crops_shown(media)
    inspection.crops = len(crops)
    _draw(inspection, pictures, crops, media, video.name)
    return inspection


def _sampled_steps(count: int, frames: int) -> list[int]:
    return sorted(set(np.linspace(0, count - 1, min(frames, count)).round().astype(int).tolist())) if count else []


def _kept_pictures(video: Path, media: ClipMedia, steps: list[int]) -> list[np.ndarray]:
    """The upright BGR pictures of the sampled kept frames, found by their times."""
    wanted = {round(float(media.timestamps[step]), 6): step for step in steps}
    found: dict[int, np.ndarray] = {}
    for seconds, picture in decode_video(video):
        step = wanted.get(round(seconds, 6))
        if step is not None:
            found[step] = picture
    return [found[step] for step in steps if step in found]


def _same(box: FaceBox, followed: np.ndarray) -> bool:
    """Whether a detection is the followed face (their boxes overlap by more than half)."""
    x0, y0 = max(box.x, followed[0]), max(box.y, followed[1])
    x1 = min(box.x + box.width, followed[0] + followed[2])
    y1 = min(box.y + box.height, followed[1] + followed[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter > 0.5 * min(box.width * box.height, followed[2] * followed[3])


def _crops_shown(media: ClipMedia) -> list[np.ndarray]:
    if media.crops is None:
        return []
    picks = np.linspace(0, len(media.crops) - 1, min(MAX_CROPS, len(media.crops))).round().astype(int)
    return [media.crops[index] for index in sorted(set(picks.tolist()))]


def _draw(inspection: Inspection, pictures: list[np.ndarray], crops: list[np.ndarray], media: ClipMedia,
          title: str) -> None:
    rows = 2 + bool(inspection.probabilities)
    figure = plt.figure(figsize=(16, 3.2 * rows))
    grid = figure.add_gridspec(rows, max(len(pictures), 1))
    for column, (picture, followed, others) in enumerate(zip(pictures, inspection.followed, inspection.others)):
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(cv2.cvtColor(_boxed(picture, followed, others), cv2.COLOR_BGR2RGB))
        step = inspection.steps[column]
        axis.set_title(f"{media.timestamps[step]:.2f} s" + ("" if followed is not None else " (no face)"), fontsize=9)
        axis.axis("off")
    strip = figure.add_subplot(grid[1, :])
    if crops:
        strip.imshow(cv2.cvtColor(np.concatenate([_colour(crop) for crop in crops], axis=1), cv2.COLOR_BGR2RGB))
    strip.set_title(f"{len(crops)} of the {0 if media.crops is None else len(media.crops)} crops the face encoder "
                    "receives" if crops else "no crops: no face was followed", fontsize=9)
    strip.axis("off")
    if inspection.probabilities:
        bars = figure.add_subplot(grid[2, :])
        names = list(inspection.probabilities)
        bars.bar(names, [inspection.probabilities[name] for name in names], color="tab:blue")
        bars.set_ylim(0, 1)
        bars.set_ylabel("probability")
    figure.suptitle(f"{title}: green, the face followed; red, other faces ({media.faces} seen at most)")
    inspection.path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(inspection.path) as temporary:
        figure.savefig(temporary, dpi=80, format="png")
    plt.close(figure)


def _boxed(picture: np.ndarray, followed: np.ndarray | None, others: list[FaceBox]) -> np.ndarray:
    drawn = picture.copy()
    thickness = max(2, picture.shape[0] // 120)
    for box in others:
        cv2.rectangle(drawn, (int(box.x), int(box.y)), (int(box.x + box.width), int(box.y + box.height)), OTHER,
                      thickness)
    if followed is not None:
        x, y, w, h = followed.astype(int)
        cv2.rectangle(drawn, (x, y), (x + w, y + h), FOLLOWED, thickness)
    return drawn


def _colour(crop: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR) if crop.ndim == 2 or crop.shape[2] == 1 else crop
