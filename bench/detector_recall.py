"""What the face detector finds and misses, on clips made from real photographs
(bench.photo_scenes): people whose faces are 5% to 50% of the frame's height, one to three of
them, in 4:3, 16:9 and 9:16 frames; clips with no face (a cat, a cup of coffee); and frames of
the demo corpus. The numbers in README "Features" come from it:

    python -m bench.detector_recall [--candidates short,short+tiles,full,full+tiles,cascade,mtcnn] [--demo-clips 20]

Per candidate (a BlazeFace model at its default confidence floor, alone or with the tiled search of
extract.face_detection.TiledSearch; or MTCNN at its defaults): the share of true faces found (a
detection overlapping the true box by an IoU of at least 0.3: the models draw their boxes a little
differently) by face size, the mean IoU of those found, the share of face-less frames with a
"face", and the time of a detection call by frame shape, on one thread for PyTorch and OpenCV, as
in an extraction worker. Writes nothing.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.box_agreement import iou, videos_of
from bench.photo_scenes import Scene, fits, scene_frames, write_clip
from common.cli import run_stage
from common.config import option
from extract.face_detection import (
    CascadeOptions,
    MediaPipeCascade,
    MediaPipeFaceDetector,
    MediaPipeOptions,
    MtcnnFaceDetector,
    MtcnnOptions,
    TiledSearch,
)
from extract.face_track import Video
from extract.model_files import FACE_DETECTOR_FULL_RANGE, FACE_DETECTOR_SHORT_RANGE, model_path

SHAPES = ((640, 480), (1280, 720), (720, 1280))
FACE_HEIGHTS = (0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5)
MATCH_IOU = 0.3
TILES = (1.0, 0.5)


@dataclass
class RecallConfig:
    candidates: str = option("short,short+tiles,full,full+tiles,cascade", "detectors to measure, comma-separated: "
                             "short or full (BlazeFace's two models), +tiles; cascade (--detector mediapipe-cascade); "
                             "mtcnn (--detector mtcnn)")
    corpus_dir: Path = option(Path("data/raw/demo"), "demo corpus (its VideoFlash/*.flv); skipped when absent")
    demo_clips: int = option(20, "demo clips to read (every 3rd frame of each)")


def open_candidate(name: str):
    """The candidate detector, each model at its default confidence floor (--min-face-score for the
    short-range model alone, --full-range-min-score for the full-range one)."""
    if name == "cascade":
        return MediaPipeCascade(CascadeOptions())
    if name == "mtcnn":
        return MtcnnFaceDetector.build(MtcnnOptions(), ())
    model, _, tiles = name.partition("+")
    pinned, floor = {"short": (FACE_DETECTOR_SHORT_RANGE, MediaPipeOptions().min_face_score),
                     "full": (FACE_DETECTOR_FULL_RANGE, CascadeOptions().full_range_min_score)}[model]
    return TiledSearch(MediaPipeFaceDetector(model_path(pinned), floor), TILES if tiles == "tiles" else ())


def matched(found: list, truth: np.ndarray) -> list[float]:
    """The IoU of each true face with its best detection (0 where none overlaps enough)."""
    boxes = [np.array([b.x, b.y, b.width, b.height], np.float32) for b in found]
    best = [max((float(iou(box[None], face[None])[0]) for box in boxes), default=0.0) for face in truth]
    return [value if value >= MATCH_IOU else 0.0 for value in best]


def scenes() -> list[Scene]:
    people = [Scene(w, h, size, count) for w, h in SHAPES for size in FACE_HEIGHTS for count in (1, 2, 3)]
    return [s for s in people if fits(s)] + [Scene(w, h, people=0, nobody=n) for w, h in SHAPES
                                             for n in ("cat", "coffee")]


def measure(config: RecallConfig) -> int:
    names = [name.strip() for name in config.candidates.split(",") if name.strip()]
    # As extract.engine sets them in each worker, so that the ms a call are what extraction pays.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as scratch:
        clips = []
        for scene in scenes():
            frames, truth = scene_frames(scene)
            clips.append((scene, write_clip(frames, Path(scratch) / f"{scene.name}.mp4"), truth))
        for name in names:
            report(name, [(scene, *run_clip(name, path, truth)) for scene, path, truth in clips],
                   demo_recall(name, config))
    return 0


def run_clip(name: str, path: Path, truth: list[np.ndarray]) -> tuple[list[float], int, int, float]:
    """Per true face, its IoU (0: missed); frames with a detection; frames with a true face found; seconds a call."""
    overlaps, frames_with_faces, frames_found, seconds = [], 0, 0, []
    with open_candidate(name) as detector, Video(path) as video:
        for (_, frame), faces in zip(video.frames(), truth):
            picture = video.pixels(frame, "rgb24")
            tick = time.perf_counter()
            found = detector.detect_picture(picture)
            seconds.append(time.perf_counter() - tick)
            frames_with_faces += bool(found)
            overlap = matched(found, faces)
            overlaps += overlap
            frames_found += any(overlap)
    return overlaps, frames_with_faces, frames_found, statistics.median(seconds)


def demo_recall(name: str, config: RecallConfig) -> str:
    if not (config.corpus_dir / "VideoFlash").is_dir():
        return f"demo: skipped, no corpus at {config.corpus_dir} (make demo-data)"
    frames = found = 0
    seconds = []
    with open_candidate(name) as detector:
        for path in videos_of(config.corpus_dir, config.demo_clips):
            with Video(path) as video:
                for index, (_, frame) in enumerate(video.frames()):
                    if index % 3 == 0:
                        picture = video.pixels(frame, "rgb24")
                        tick = time.perf_counter()
                        found += bool(detector.detect_picture(picture))
                        seconds.append(time.perf_counter() - tick)
                        frames += 1
    return (f"demo: a face on {found} of {frames} frames ({found / max(frames, 1):.1%}); "
            f"{statistics.median(seconds) * 1000:.1f} ms a call (median), {statistics.mean(seconds) * 1000:.1f} (mean)")


def report(name: str, results: list, demo: str) -> None:
    by_size, costs, empty = defaultdict(list), defaultdict(list), defaultdict(lambda: [0, 0])
    frames_found = defaultdict(list)
    for scene, overlaps, with_faces, found, seconds in results:
        costs[f"{scene.width}x{scene.height}"].append(seconds)
        if scene.people:
            by_size[scene.face_height] += overlaps
            frames_found[scene.face_height].append(found / (len(overlaps) / scene.people))
        else:
            empty[scene.nobody][0] += with_faces
            empty[scene.nobody][1] += len(overlaps) or 10
    print(f"## {name}")
    print("| face height | faces | found | mean IoU of found | frames with a face found |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for size, overlaps in sorted(by_size.items()):
        hits = [value for value in overlaps if value > 0]
        print(f"| {size:.1%} | {len(overlaps)} | {len(hits) / len(overlaps):.0%} | "
              f"{statistics.mean(hits) if hits else 0:.2f} | {statistics.mean(frames_found[size]):.0%} |")
    print("false faces: " + ", ".join(f"{what} on {count} of {total} frames" for what, (count, total) in empty.items()))
    print("ms a call (median of clips' medians): " + ", ".join(
        f"{shape} {statistics.median(values) * 1000:.1f}" for shape, values in costs.items()))
    print(demo, flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_stage("detector-recall", RecallConfig, measure, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
