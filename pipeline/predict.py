"""Stage: predict the emotion of video clips with a trained run (``make predict VIDEO=path``).

VIDEO is a video file, or a folder: every video file in it (corpora.folder.VIDEO_SUFFIXES),
in name order. The run is found as make eval finds it (runs/<dataset>/<split>/<model>/, or
--run-dir). Each clip goes through the extraction the run was trained on, rebuilt from the
extraction.yaml of the feature folder that the run's config.yaml names (the same face encoder
weights, face detector and tracking, log-mel), then through the model; the probabilities are
the softmax of the run's predicting head (model.evaluation.PREDICTING_HEAD). The audio is the
video's own sound track. A video without one is predicted from the video alone, a clip where
no face is found from the audio alone; a file that yields neither gets an error in its row,
and the other files are still predicted.

Prints a table and writes <out-dir>/<name>.csv (a row per clip: the predicted emotion, the
probability of each class, the modalities used, a note on a missing modality or the error)
and <name>.json (the same, with the run folder, its kept epoch, the extraction folder and this
config), where <name> is the video's or the folder's name and <out-dir> is
<run-dir>/predictions/ by default. Exit status: 0 when every file was predicted, 1 when some
file failed (after predicting the others), 2 when prediction cannot start (no run, no
extraction folder, no video).
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from corpora.folder import VIDEO_SUFFIXES
from corpora.manifest import REPO_ROOT
from extract.audio import LogMel
from extract.clip_media import ClipJob, ClipMedia, TrackConfig, process_clip
from extract.face_detection import HaarFaceDetector, MediaPipeFaceDetector
from extract.face_encoders import FaceEncoder, make_face_encoder
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, ModelFileError, model_path
from extract.shards import ClipFeatures
from model.auxformer import AuxFormer
from model.data import EXTRACTION_FILE, FeatureMismatch, model_inputs
from model.evaluation import PREDICTING_HEAD, head_logits
from model.training import BEST_CHECKPOINT, VARIANTS, TrainingError, resolve_device
from pipeline.config import option, parse_config, to_yaml
from pipeline.evaluate import RunSelection, load_run
from pipeline.features import FeaturesConfig, clip_features

PREDICTIONS_DIR = "predictions"


class PredictError(ValueError):
    """Prediction cannot start; the message says what to do."""


@dataclass
class PredictConfig(RunSelection):
    video: str = option("", "a video file, or a folder: every video file in it")
    out_dir: str = option("", "where the predictions go; '' for <run-dir>/predictions/")
    device: str = option("auto", "auto (cuda when available), cpu or cuda")


def video_files(video: str) -> list[Path]:
    """The file, or the video files in the folder, sorted; PredictError when there are none."""
    if not video:
        raise PredictError("no video given: make predict VIDEO=path/to/clip.mp4 (or a folder of clips)")
    path = Path(video)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PredictError(f"{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise PredictError(f"{path}: no video files ({' '.join(VIDEO_SUFFIXES)}) in this folder")
    return files


@dataclass
class Extraction:
    """The feature extraction a run was trained on, rebuilt to run on new clips one at a time."""

    folder: Path
    config: FeaturesConfig
    encoder: FaceEncoder
    log_mel: LogMel
    track: TrackConfig

    def open_detector(self) -> MediaPipeFaceDetector | HaarFaceDetector:
        if self.config.detector == "haar":
            return HaarFaceDetector()
        return MediaPipeFaceDetector(model_path(FACE_DETECTOR_SHORT_RANGE))

    def features(self, media: ClipMedia) -> ClipFeatures:
        embedded = (self.encoder.embed(media.crops) if media.crops is not None
                    else np.zeros((0, self.encoder.embedding_dim), np.float32))
        mel = self.log_mel([media.audio])[0] if media.audio is not None else None
        return clip_features(media, embedded, mel, self.config.n_mels)


def load_extraction(folder: Path, device: str) -> Extraction:
    """The extraction recorded in folder/extraction.yaml; FeatureMismatch when it cannot be rebuilt the same."""
    path = folder / EXTRACTION_FILE
    if not path.is_file():
        raise FeatureMismatch(f"{folder}, the extraction the run was trained on, is gone (its {EXTRACTION_FILE} "
                              "holds the feature config prediction needs); run make features with the options "
                              "the run was trained on, or train a new run")
    record = yaml.safe_load(path.read_text())
    known = {f.name for f in fields(FeaturesConfig)}
    config = FeaturesConfig(**{name: value for name, value in record["config"].items() if name in known})
    weights = Path(config.encoder_weights) if config.encoder_weights else None
    encoder = make_face_encoder(config.encoder, device, weights)
    recorded = {**record["identity"], "face_detector_sha256": record["face_detector_sha256"]}
    current = {**config.identity(encoder.weights_sha256, encoder.input_size),
               "face_detector_sha256": FACE_DETECTOR_SHORT_RANGE.sha256 if config.detector == "mediapipe" else ""}
    differing = [f"{name} {recorded.get(name)!r} there, {value!r} here" for name, value in current.items()
                 if recorded.get(name) != value]
    if differing:
        raise FeatureMismatch(f"{folder} was extracted with what this machine lacks ({'; '.join(differing)}): "
                              f"put back the model files it was made with (make models, or the encoder_weights "
                              f"file its {EXTRACTION_FILE} names) or retrain on a new extraction")
    mel = config.mel()
    track = TrackConfig(config.detect_every, config.max_gap_frames, encoder.input_size, config.crop_margin,
                        mel.win_length)
    return Extraction(folder, config, encoder, LogMel(mel, device), track)


@dataclass
class Prediction:
    file: str
    emotion: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)
    modalities: str = ""  # audio+video, audio or video
    note: str = ""  # what the extraction noted: a missing modality and why, a truncated track
    error: str = ""  # why the file was not predicted

    def csv_row(self, classes: list[str]) -> dict:
        return {"file": self.file, "emotion": self.emotion,
                **{f"p_{name}": self.probabilities.get(name, "") for name in classes},
                "modalities": self.modalities, "note": self.note, "error": self.error}


class Predictor:
    """A trained run's model behind the extraction it was trained on."""

    def __init__(self, run_dir: Path, device_name: str):
        record, checkpoint = load_run(run_dir)
        self.run_dir = run_dir
        self.variant = record["stage"]["model"]
        self.classes = list(checkpoint["classes"])
        self.epoch = checkpoint["epoch"]
        self.device = resolve_device(device_name)
        features = Path(record["data"]["features"])
        # train.py records the folder relative to the repository when it lies inside it.
        self.extraction = load_extraction(features if features.is_absolute() else REPO_ROOT / features,
                                          str(self.device))
        try:
            self.model = AuxFormer.from_checkpoint(checkpoint).to(self.device).eval()
        except RuntimeError as error:  # load_state_dict: weights of an older version of the model
            why = str(error).splitlines()[-1].strip().rstrip(".")
            raise TrainingError(f"{run_dir / BEST_CHECKPOINT} does not fit this version of the model ({why}); "
                                "retrain it with make train FORCE=1") from None

    def predict_files(self, files: list[Path]) -> list[Prediction]:
        with self.extraction.open_detector() as detector:
            return [self.predict(path, detector)
                    for path in tqdm(files, unit="clip", desc="predict", disable=len(files) < 2)]

    def predict(self, path: Path, detector) -> Prediction:
        try:
            media = process_clip(ClipJob(path.stem, None, path), detector, self.extraction.track)
        except Exception as error:  # whatever a broken file makes the decoders raise costs only its row
            return Prediction(path.name, error=f"{path}: cannot be decoded ({type(error).__name__}: {error}); "
                                               "check that it plays, or re-encode it (e.g. ffmpeg -i IN OUT.mp4)")
        note = "; ".join(f"{name}: {text}" for name, text in (("audio", media.audio_note), ("video", media.video_note))
                         if text)
        if media.failed:
            return Prediction(path.name, note=note, error=f"{path}: nothing to predict from ({note}); check that it "
                              "is a video that plays, with a sound track or a visible face")
        features = self.extraction.features(media)
        variant = VARIANTS[self.variant]
        used = [name for name, present in (("audio", features.has_audio and variant.uses_audio),
                                           ("video", features.has_video and variant.uses_video)) if present]
        if not used:
            return Prediction(path.name, note=note, error=f"{path}: the {self.variant} model predicts from "
                              f"{'audio' if variant.uses_audio else 'video'} alone, which this clip lacks ({note})")
        audio, video = model_inputs(features)
        with torch.inference_mode():
            outputs = self.model(audio[None].to(self.device), torch.tensor([len(audio)]),
                                 video[None].to(self.device), torch.tensor([len(video)]))
        heads = head_logits(*(output.float() for output in outputs), features.has_audio, features.has_video)
        probabilities = torch.softmax(heads[PREDICTING_HEAD[self.variant]][0], dim=0).cpu().tolist()
        return Prediction(path.name, self.classes[int(np.argmax(probabilities))],
                          dict(zip(self.classes, probabilities)), "+".join(used), note)


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def write_outputs(predictions: list[Prediction], classes: list[str], out_dir: Path, name: str,
                  summary: dict) -> tuple[Path, Path]:
    """<name>.csv (a row per clip) and <name>.json (``summary`` and the predictions)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [prediction.csv_row(classes) for prediction in predictions]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    csv_path, json_path = out_dir / f"{name}.csv", out_dir / f"{name}.json"
    _write_atomic(csv_path, table.getvalue())
    _write_atomic(json_path, json.dumps({**summary, "predictions": [asdict(p) for p in predictions]}, indent=1))
    return csv_path, json_path


def format_table(predictions: list[Prediction]) -> str:
    rows = [("file", "emotion", "probability", "modalities", "note")]
    for p in predictions:
        probability = f"{p.probabilities[p.emotion]:.3f}" if p.emotion else "-"
        rows.append((p.file, p.emotion or "-", probability, p.modalities or "-",
                     f"error: {p.error}" if p.error else p.note))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join("  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[4]]).rstrip()
                     for row in rows)


def run(config: PredictConfig) -> tuple[list[Prediction], Path, Path]:
    """Predict every file of config.video; returns the predictions and the CSV and JSON written."""
    files = video_files(config.video)
    predictor = Predictor(config.folder(), config.device)
    predictions = predictor.predict_files(files)
    video = Path(config.video)
    name = video.stem if video.is_file() else video.resolve().name
    out_dir = Path(config.out_dir) if config.out_dir else predictor.run_dir / PREDICTIONS_DIR
    summary = {"video": config.video, "run_dir": str(predictor.run_dir), "model": predictor.variant,
               "predicting_head": PREDICTING_HEAD[predictor.variant], "checkpoint_epoch": predictor.epoch,
               "extraction": str(predictor.extraction.folder), "classes": predictor.classes,
               "written": time.strftime("%Y-%m-%d %H:%M:%S"), "predict_config": yaml.safe_load(to_yaml(config))}
    csv_path, json_path = write_outputs(predictions, predictor.classes, out_dir, name, summary)
    return predictions, csv_path, json_path


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(PredictConfig, argv, description=__doc__)
        predictions, csv_path, json_path = run(config)
    except (PredictError, FeatureMismatch, TrainingError, ModelFileError) as error:
        print(f"predict: {error}", file=sys.stderr)
        return 2
    print(format_table(predictions))
    print(f"predict: {csv_path}, {json_path}")
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"predict: {len(failed)} of {len(predictions)} files failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
