"""Prediction on raw video with a trained run: ``Predictor``, and the files it writes.

A ``Predictor`` is built from a run folder alone: its best.pt, and the extractor rebuilt from
the run's own copy of extraction.yaml (extract.spec.Extractor), checked against the model files
on this machine. Each clip goes through that extractor (its own sound track is the audio), then
through the model; the probabilities are the softmax of the variant's predicting head
(model.variants). A video without a sound track is predicted from the video alone, a clip
where no face is found from the audio alone; a file that yields neither gets an error in its
row, and the other files are still predicted. Each prediction carries the time its parts took.

A clip longer than the Predictor's ``window_seconds`` (in audio or in video steps) is cut into
the fewest equal windows no longer than that, each modality at the same fractions of its steps;
the model predicts each window, and the clip's logits are the windows' average, weighted by their
steps. A shorter clip goes to the model whole.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import files
from common.config import check_within
from common.device import resolve_device
from common.errors import ProjectError
from corpora.folder import VIDEO_SUFFIXES
from extract.audio import SAMPLE_RATE
from extract.clip_media import ClipJob, ClipMedia, process_clip, track_video
from extract.shards import ClipFeatures
from extract.spec import Extractor
from model.auxformer import AuxFormer
from model.data import FeatureMismatch, model_inputs
from model.variants import VARIANTS, head_logits
from training.run_folder import BEST_CHECKPOINT, RunFolder

# Longer clips are predicted in windows of this many seconds: attention memory grows with the
# square of a sequence's steps (an hour of video whole would need hundreds of GB), and the model
# was trained on clips of a few seconds. 30 s is far longer than CREMA-D's clips, so clips like
# those it was trained on go to the model whole.
WINDOW_SECONDS = 30.0
# A window holds at least 10 log-mel frames and 3 video frames, so an hour of video is at most
# 36,000 windows; at most 2 minutes, whose attention (12,000 log-mel steps squared) still fits a GPU.
WINDOW_RANGE = (0.1, 120.0)


class PredictError(ProjectError):
    """Prediction cannot start; the message says what to do."""


@dataclass
class Prediction:
    file: str
    emotion: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)
    modalities: str = ""  # audio+video, audio or video
    face_share: float = 0.0  # frames with a usable face, of all frames
    face_score: float = 0.0  # mean confidence of the face detections the track took (0: none)
    audio_seconds: float = 0.0
    video_seconds: float = 0.0
    rotation: int = 0  # counter-clockwise degrees the video's frames were turned to be upright (its rotation tag)
    faces: int = 0  # the most faces one detection saw; the track followed one of them
    note: str = ""  # what the extraction noted: a missing modality and why, a truncated track
    error: str = ""  # why the file was not predicted
    seconds: dict[str, float] = field(default_factory=dict)  # time per part of the prediction

    def csv_row(self, classes: list[str]) -> dict:
        return {"file": self.file, "emotion": self.emotion,
                **{f"p_{name}": self.probabilities.get(name, "") for name in classes},
                "modalities": self.modalities, "face_share": round(self.face_share, 4),
                "face_score": round(self.face_score, 4), "audio_seconds": round(self.audio_seconds, 3),
                "video_seconds": round(self.video_seconds, 3), "rotation": self.rotation, "faces": self.faces,
                "note": self.note,
                "error": self.error}


def _evidence(media: ClipMedia) -> dict:
    """What a prediction rests on, from the clip's media."""
    frames = len(media.valid)
    return {"face_share": float(media.valid.sum() / frames) if frames else 0.0,
            "face_score": float(np.mean(media.detection_scores)) if media.detection_scores else 0.0,
            "audio_seconds": len(media.audio) / SAMPLE_RATE if media.audio is not None else 0.0,
            "video_seconds": media.duration if frames else 0.0, "rotation": media.rotation, "faces": media.faces}


class Predictor:
    """A trained run's model behind the extraction it was trained on."""

    def __init__(self, run_dir: Path, device_name: str = "auto", window_seconds: float = WINDOW_SECONDS):
        check_within("window_seconds", window_seconds, *WINDOW_RANGE, PredictError)
        self.window_seconds = window_seconds
        self.run = RunFolder(run_dir, writer=False)
        record = self.run.record()
        checkpoint = self.run.load_checkpoint(BEST_CHECKPOINT)
        self.variant = VARIANTS[record.variant]
        self.classes = list(checkpoint["classes"])
        self.epoch = checkpoint["epoch"]
        self.trained_on = record.data.get("dataset", "")
        self.device = resolve_device(device_name)
        recorded = self.run.extraction()
        if recorded.spec.video_features_from:
            raise PredictError(f"{run_dir} was trained on video features imported from "
                               f"{recorded.spec.video_features_from}, computed elsewhere: raw video cannot be turned "
                               "into them here; evaluate it with make eval, or retrain on extracted features")
        self.extractor = Extractor(recorded.spec, str(self.device), recorded.models)
        differing = recorded.differences(self.extractor.record())
        if differing:
            raise FeatureMismatch(f"{run_dir} was trained on features made with what this machine lacks "
                                  f"({'; '.join(differing)}): put back the model files it was made with "
                                  "(make models, or the weights files its extraction.yaml names) "
                                  "or retrain on a new extraction")
        try:
            self.model = AuxFormer.from_checkpoint(checkpoint).to(self.device).eval()
        except RuntimeError as error:  # load_state_dict: weights of an older version of the model
            why = str(error).splitlines()[-1].strip().rstrip(".")
            raise PredictError(f"{self.run / BEST_CHECKPOINT} does not fit this version of the model ({why}); "
                               "retrain it with make train FORCE=1") from None

    def predict_files(self, paths: list[Path]) -> list[Prediction]:
        with self.extractor.open_detector() as detector:
            return [self.predict(path, detector)
                    for path in tqdm(paths, unit="clip", desc="predict", disable=len(paths) < 2)]

    def _faces_note(self, media: ClipMedia) -> str:
        if media.faces < 2:
            return ""
        return (f"{media.faces} faces in view; followed the {self.extractor.spec.face_select} one at the start "
                "(--face-select, as the run was trained)")

    def predict(self, path: Path, detector) -> Prediction:
        media = self.media(path, detector)
        return media if isinstance(media, Prediction) else self.predict_media(path, media)

    def media(self, path: Path, detector, with_audio: bool = True) -> ClipMedia | Prediction:
        """The file's media as the run's extraction takes it (without its audio, which a long
        recording's segments read in blocks), or a Prediction with the error."""
        job = ClipJob(path.stem, None, path)
        try:
            if with_audio:
                return process_clip(job, detector, self.extractor.track)
            media = ClipMedia(job)
            track_video(media, detector, self.extractor.track)
            return media
        except Exception as error:  # whatever a broken file makes the decoders raise costs only its row
            return Prediction(path.name, error=f"{path}: cannot be decoded ({type(error).__name__}: {error}); "
                                               "check that it plays, or re-encode it (e.g. ffmpeg -i IN OUT.mp4)")

    def predict_media(self, path: Path, media: ClipMedia) -> Prediction:
        [prediction] = self.predict_parts(path, [media])
        return prediction

    def predict_parts(self, path: Path, parts: list[ClipMedia]) -> list[Prediction]:
        """The predictions for media of one file (the whole clip, or parts of it:
        extract.clip_media.media_between), the features of all of them computed in one batch, as
        extraction computes a task's clips; each is charged an equal share of that time."""
        usable = [part for part in parts if not part.failed]
        before = dict(self.extractor.seconds)
        features = dict(zip(map(id, usable), self.extractor.features(usable))) if usable else {}
        spent = {name: (self.extractor.seconds[name] - before.get(name, 0.0)) / max(1, len(usable))
                 for name in self.extractor.seconds}
        return [self._predict(path, part, features.get(id(part)), spent) for part in parts]

    def _predict(self, path: Path, media: ClipMedia, features: ClipFeatures | None, spent: dict) -> Prediction:
        seconds, evidence = dict(media.seconds), _evidence(media)
        note = "; ".join(f"{name}: {text}" for name, text in (("audio", media.audio_note), ("video", media.video_note),
                                                              ("video", self._faces_note(media))) if text)
        if features is None:
            return Prediction(path.name, note=note, seconds=seconds, **evidence,
                              error=f"{path}: nothing to predict from ({note}); check that it "
                              "is a video that plays, with a sound track or a visible face")
        seconds.update(spent)
        variant = self.variant
        used = [name for name, present in (("audio", features.has_audio and variant.uses_audio),
                                           ("video", features.has_video and variant.uses_video)) if present]
        if not used:
            return Prediction(path.name, note=note, seconds=seconds, **evidence,
                              error=f"{path}: the {variant.name} model predicts from "
                              f"{'audio' if variant.uses_audio else 'video'} alone, which this clip lacks ({note})")
        tick = time.perf_counter()
        probabilities = torch.softmax(self.logits(features), dim=0).cpu().tolist()
        seconds["model"] = time.perf_counter() - tick
        if not np.isfinite(probabilities).all():
            return Prediction(path.name, note=note, seconds=seconds, **evidence,
                              error=f"{self.run / BEST_CHECKPOINT} gives non-finite probabilities: its weights are "
                                    "damaged (a run trained on non-finite features?); retrain with make train FORCE=1")
        return Prediction(path.name, self.classes[int(np.argmax(probabilities))],
                          dict(zip(self.classes, probabilities)), "+".join(used), note=note, seconds=seconds,
                          **evidence)

    @torch.inference_mode()
    def logits(self, features: ClipFeatures) -> torch.Tensor:
        """The predicting head's float32 logits (n_classes,) for a clip: of the whole clip, or the
        step-weighted average of its windows' when it is longer than ``window_seconds``."""
        audio, video = model_inputs(features)
        windows = clip_windows(len(audio), len(video), self.extractor.audio_rate, features.fps, self.window_seconds)
        if len(windows) == 1:
            return self._head_logits(audio, video, features.has_audio, features.has_video)
        total, steps = 0.0, 0
        for audio_part, video_part in windows:
            window_audio = audio[audio_part]
            # A window without a face has its video missing, as a clip without one has.
            window_video = video[video_part] if features.valid[video_part].any() else video[:0]
            has_audio, has_video = len(window_audio) > 0, len(window_video) > 0
            if (has_audio and self.variant.uses_audio) or (has_video and self.variant.uses_video):
                weight = len(window_audio) + len(window_video)
                total = total + weight * self._head_logits(window_audio, window_video, has_audio, has_video)
                steps += weight
        return total / steps

    def _head_logits(self, audio: torch.Tensor, video: torch.Tensor, has_audio: bool, has_video: bool) -> torch.Tensor:
        outputs = self.model(audio[None].to(self.device), torch.tensor([len(audio)]),
                             video[None].to(self.device), torch.tensor([len(video)]))
        heads = head_logits(*(output.float() for output in outputs), has_audio, has_video)
        return heads[self.variant.predicting_head][0]


def clip_windows(audio_steps: int, video_steps: int, audio_rate: float, fps: float,
                 window_seconds: float) -> list[tuple[slice, slice]]:
    """The (audio, video) steps of each window of a clip: the fewest equal parts, each modality cut at
    the same fractions of its steps, with at most ``window_seconds`` of audio and of video in each.
    A clip of no more than that is one window, the whole clip. A video whose frame rate is unknown
    (0: a single frame) is cut as its audio is."""
    count = max(1, math.ceil(audio_steps / (window_seconds * audio_rate)),
                math.ceil(video_steps / (window_seconds * fps)) if fps > 0 else 1)
    return [(slice(k * audio_steps // count, (k + 1) * audio_steps // count),
             slice(k * video_steps // count, (k + 1) * video_steps // count)) for k in range(count)]


def video_files(video: str, follow_links: bool = False) -> tuple[list[Path], list[Path]]:
    """The file, or the video files in the folder, sorted, and the links skipped because they lead
    out of the folder (unless ``follow_links``); PredictError when there is nothing to predict."""
    if not video:
        raise PredictError("no video given: make predict VIDEO=path/to/clip.mp4 (or a folder of clips)")
    path = Path(video)
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise PredictError(f"{path}: no such file or folder")
    candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    inside = path.resolve()
    leaving = [p for p in candidates if p.is_symlink() and not p.resolve().is_relative_to(inside)]
    chosen = candidates if follow_links else [p for p in candidates if p not in leaving]
    if not chosen:
        raise PredictError(f"{path}: no video files ({' '.join(VIDEO_SUFFIXES)}) in this folder"
                           + (f" ({len(leaving)} links that lead out of it skipped; --follow-links takes them)"
                              if leaving else ""))
    return chosen, [] if follow_links else leaving


def write_predictions(predictions: list[Prediction], classes: list[str], out_dir: Path, name: str,
                      summary: dict) -> tuple[Path, Path]:
    """<name>.csv (a row per clip) and <name>.json (``summary`` and the predictions)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [prediction.csv_row(classes) for prediction in predictions]
    csv_path, json_path = out_dir / f"{name}.csv", out_dir / f"{name}.json"
    files.write_csv(csv_path, list(rows[0]), rows)
    files.write_text(json_path, json.dumps({**summary, "predictions": [asdict(p) for p in predictions]}, indent=1))
    return csv_path, json_path


def format_table(predictions: list[Prediction]) -> str:
    rows = [("file", "emotion", "probability", "modalities", "face frames", "note")]
    for p in predictions:
        probability = f"{p.probabilities[p.emotion]:.3f}" if p.emotion else "-"
        faces = f"{p.face_share:.0%} (score {p.face_score:.2f})" if p.face_share else "0%"
        rows.append((p.file, p.emotion or "-", probability, p.modalities or "-", faces,
                     f"error: {p.error}" if p.error else p.note))
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    return "\n".join("  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[5]]).rstrip()
                     for row in rows)


SYNTHETIC_DATASETS = ("demo", "demo-ravdess")


def training_notice(predictor: Predictor) -> str:
    """What a user must know about the data the run was trained on, or ''."""
    if predictor.trained_on in SYNTHETIC_DATASETS:
        return (f"this run was trained on the synthetic {predictor.trained_on} corpus (drawn faces, synthesised "
                "voices): it is for trying the pipeline, not for real faces and voices; train on a real corpus "
                "(README, \"Using CREMA-D and RAVDESS\") before trusting its predictions")
    return ""
