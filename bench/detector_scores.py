"""The face detector's confidence and face sizes on real pictures and demo frames: what the
defaults of --min-face-score and --min-face-size rest on (README, "Features").

    python -m bench.detector_scores --corpus-dir data/raw/demo --images DIR [--clips 40]

Reads every .png/.jpg in --images (each resized to 480x360, the demo's frame size) and every
third frame of --clips demo videos (a fixed random sample); runs BlazeFace with a confidence
floor of 0.05 and prints, per picture, each detection's confidence and its shorter side as a
fraction of the frame's, and for the demo frames the range of the best detection's. Writes nothing.
"""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.cli import run_stage
from common.config import option
from extract.face_detection import MediaPipeFaceDetector
from extract.face_track import decode_video

FRAME_SIZE = (480, 360)
FLOOR = 0.05


@dataclass
class ScoresConfig:
    corpus_dir: Path = option(Path("data/raw/demo"), "demo corpus")
    images: str = option("", "a folder of pictures (e.g. scikit-image's sample photos)")
    clips: int = option(40, "demo clips to sample")
    seed: int = option(0, "seed of the sample")


def scores(config: ScoresConfig) -> int:
    with MediaPipeFaceDetector(None, FLOOR) as detector:
        for path in sorted(Path(config.images).glob("*")) if config.images else []:
            picture = cv2.imread(str(path))
            if picture is None:
                continue
            frame = cv2.resize(picture, FRAME_SIZE)
            found = sorted(detector.detect(frame), key=lambda box: -box.score)
            print(f"{path.name}: " + ", ".join(f"{box.score:.3f} ({min(box.width, box.height) / FRAME_SIZE[1]:.2f})"
                                                for box in found[:5]))
        videos = sorted((config.corpus_dir / "VideoFlash").glob("*.flv"))
        best, sizes, frames = [], [], 0
        for video in random.Random(config.seed).sample(videos, min(config.clips, len(videos))):
            for index, (_, frame) in enumerate(decode_video(video)):
                if index % 3:
                    continue
                frames += 1
                found = detector.detect(frame)
                if found:
                    box = max(found, key=lambda box: box.score)
                    best.append(box.score)
                    sizes.append(min(box.width, box.height) / min(frame.shape[:2]))
        if best:
            print(f"demo: {frames} frames, a detection on {len(best)}; best confidence {min(best):.3f} to "
                  f"{max(best):.3f} (median {np.median(best):.3f}); size {min(sizes):.2f} to {max(sizes):.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("detector-scores", ScoresConfig, scores, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
