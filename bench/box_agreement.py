"""Box agreement: the face boxes extraction follows against the detector's own box on every frame.

Reads the videos of a corpus (every ``--every``-th clip in clip-id order, up to ``--clips``) and
writes nothing; prints, and returns to ``make bench``, how well the boxes of the extraction
options (``--face-rate``, ``--detect-every``, ``--max-gap-frames``; the defaults of ``make
features``) agree with those of detection on every frame, on the frames extraction keeps:

- mean, median and 5th percentile of the intersection over union (IoU) on the kept frames where
  both have a box, over all of them and over those between detections (interpolated) only;
- the share of kept frames where one has a face and the other not.

On its own: ``python -m bench.box_agreement --corpus-dir data/raw/demo --clips 100``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.report import box_sentence
from common.config import option, parse_config, part
from extract.clip_media import ClipJob, TrackConfig, process_clip
from extract.spec import ExtractionSpec, Extractor


@dataclass
class AgreementConfig:
    spec: ExtractionSpec = part(ExtractionSpec)
    corpus_dir: str = option("data/raw/demo", "corpus folder with VideoFlash/*.flv (or a folder of videos)")
    clips: int = option(100, "clips to measure (spread over the corpus in clip-id order)")


def videos_of(corpus: Path, count: int) -> list[Path]:
    folder = corpus / "VideoFlash" if (corpus / "VideoFlash").is_dir() else corpus
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".flv", ".mp4", ".webm", ".avi", ".mkv"))
    step = max(1, len(paths) // max(count, 1))
    return paths[::step][:count]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N, 4) x, y, w, h boxes."""
    x0, y0 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x1 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y1 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def agreement(videos: list[Path], spec: ExtractionSpec) -> dict:
    """The figures of the module docstring for these videos."""
    extractor = Extractor(spec)
    track = extractor.track
    every_frame = TrackConfig(1, 0, track.crop_size, track.crop_margin, track.min_audio_samples, track.min_face_size,
                              0.0, track.grey)
    ious, between, disagree, kept = [], [], 0, 0
    with extractor.open_detector() as detector:
        for path in videos:
            job = ClipJob(path.stem, None, path)
            followed = process_clip(job, detector, track)
            reference = process_clip(job, detector, every_frame)
            # The kept frames carry their own frames' times.
            at = {round(t, 6): i for i, t in enumerate(reference.timestamps)}
            rows = np.array([at[round(t, 6)] for t in followed.timestamps])
            ref_valid, ref_boxes = reference.valid[rows], reference.boxes[rows]
            both = followed.valid & ref_valid
            disagree += int((followed.valid != ref_valid).sum())
            kept += len(rows)
            values = iou(followed.boxes[both], ref_boxes[both])
            ious.append(values)
            detection_steps = np.arange(len(rows)) % spec.detect_every == 0
            between.append(values[~detection_steps[both]])
    ious, between = np.concatenate(ious or [np.zeros(0)]), np.concatenate(between or [np.zeros(0)])

    def summary(values: np.ndarray) -> dict:
        if not len(values):
            return {"mean": None, "median": None, "p5": None, "frames": 0}
        return {"mean": float(values.mean()), "median": float(np.median(values)),
                "p5": float(np.percentile(values, 5)), "frames": int(len(values))}

    return {"clips": len(videos), "kept_frames": kept, "face_rate": spec.face_rate, "detect_every": spec.detect_every,
            "max_gap_frames": spec.max_gap_frames, "all": summary(ious), "between_detections": summary(between),
            "validity_disagreement": disagree / kept if kept else 0.0}


def main(argv: list[str] | None = None) -> int:
    config = parse_config(AgreementConfig, argv, description=__doc__)
    videos = videos_of(Path(config.corpus_dir), config.clips)
    if not videos:
        print(f"box agreement: no videos in {config.corpus_dir}", file=sys.stderr)
        return 2
    print(f"box agreement: {box_sentence(agreement(videos, config.spec))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
