"""Stage: predict the emotion of video clips with a trained run (``make predict VIDEO=path``).

VIDEO is a video file, or a folder: every video file in it (corpora.folder.VIDEO_SUFFIXES), in
name order; links that lead out of the folder are skipped unless --follow-links. The run is
found as make eval finds it (runs/<dataset>/<split>/<model>/, or --run-dir), and predicts from
its folder alone (inference.predictor: the extraction it was trained on is rebuilt from the
run's copy of extraction.yaml).

Prints a table and writes <out-dir>/<name>.csv (a row per clip: the predicted emotion, the
probability of each class, the modalities used, the share of frames with a face and the mean
face detection confidence, the audio and video durations, the rotation that turned the video's
frames upright (its rotation tag, counter-clockwise degrees; 0 for none), a note on a missing
modality or the error); a run trained on the synthetic demo corpus says so once
and <name>.json (the same, with the run folder, its kept epoch and this config), where <name>
is the video's or the folder's name and <out-dir> is <run-dir>/predictions/ by default.

With --segments speech (utterances between pauses) or --segments fixed (regular windows), each
recording is cut into segments (inference.segments, where the rule is) and each segment is
predicted alone: <name>.csv has a row per segment (its start and end seconds, then the columns
above), <name>.json each recording's segments, speech intervals and share of speech time per
emotion, and <stem>.timeline.png each recording's timeline (inference.timeline). --segments none,
the default, writes exactly the per-file rows above.

Exit status: 0 when every file was predicted, 1 when some file failed (after predicting the
others; with segments, a file none of whose segments could be predicted), 2 when prediction
cannot start (no run, no video, options out of range).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_stage
from common.config import config_values, option, part
from common.files import check_writable
from common.processes import keep_large_blocks_returnable
from extract.face_detection import NATIVE_LOGS_VARIABLE
from inference.predictor import WINDOW_SECONDS, Predictor, format_table, training_notice, video_files, write_predictions
from inference.segments import SegmentConfig, Segmenter
from inference.timeline import format_timelines, predict_timelines, write_timelines
from training.run_folder import PREDICTIONS_DIR, RunSelection


@dataclass
class PredictConfig(RunSelection):
    video: str = option("", "a video file, or a folder: every video file in it")
    out_dir: str = option("", "where the predictions go; '' for <run-dir>/predictions/")
    device: str = option("auto", "auto (cuda when available), cpu or cuda")
    follow_links: bool = option(False, "in a folder, also predict links that lead out of it")
    window_seconds: float = option(WINDOW_SECONDS, "predict longer clips in windows of at most this many seconds, "
                                                   "averaged (attention memory grows with the square of the length)")
    verbose: bool = option(False, "let the face detector's native logs through (silenced by default)")
    segmenting: SegmentConfig = part(SegmentConfig)


def predict(config: PredictConfig) -> int:
    if config.verbose:
        os.environ[NATIVE_LOGS_VARIABLE] = "1"
    paths, skipped = video_files(config.video, config.follow_links)
    for link in skipped:
        print(f"predict: skipped {link}: a link that leads out of {config.video} (--follow-links takes it)",
              file=sys.stderr)
    predictor = Predictor(config.folder(), config.device, config.window_seconds)
    notice = training_notice(predictor)
    if notice:
        print(f"predict: note: {notice}", file=sys.stderr)
    video = Path(config.video)
    name = video.stem if video.is_file() else video.resolve().name
    out_dir = Path(config.out_dir) if config.out_dir else predictor.run.path / PREDICTIONS_DIR
    check_writable(out_dir, "--out-dir")  # before the predictions, which would be lost
    if config.segmenting.segments != "none":
        return _predict_segments(config, predictor, paths, out_dir, name, notice)
    predictions = predictor.predict_files(paths)
    csv_path, json_path = write_predictions(predictions, predictor.classes, out_dir, name,
                                            _summary(config, predictor, notice))
    print(format_table(predictions))
    print(f"predict: {csv_path}, {json_path}")
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"predict: {len(failed)} of {len(predictions)} files failed", file=sys.stderr)
    return 1 if failed else 0


def _summary(config: PredictConfig, predictor: Predictor, notice: str) -> dict:
    return {"video": config.video, "run_dir": str(predictor.run), "model": predictor.variant.name,
            "predicting_head": predictor.variant.predicting_head, "checkpoint_epoch": predictor.epoch,
            "classes": predictor.classes, "trained_on": predictor.trained_on, "notice": notice,
            "written": time.strftime("%Y-%m-%d %H:%M:%S"), "predict_config": config_values(config)}


def _predict_segments(config: PredictConfig, predictor: Predictor, paths: list[Path], out_dir: Path, name: str,
                      notice: str) -> int:
    """A timeline per recording; a recording fails when none of its segments could be predicted."""
    keep_large_blocks_returnable()  # memory must not grow with the recording's length
    timelines = predict_timelines(predictor, paths, Segmenter(config.segmenting))
    written = write_timelines(timelines, predictor.classes, out_dir, name, _summary(config, predictor, notice))
    print(format_timelines(timelines, predictor.classes))
    print(f"predict: {', '.join(map(str, written))}")
    failed = [t for t in timelines if t.error or not any(s.prediction.emotion for s in t.segments)]
    if failed:
        print(f"predict: {len(failed)} of {len(timelines)} files failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("predict", PredictConfig, predict, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
