"""The extraction spec: everything that determines a set of features, and the extractor built from it.

``ExtractionSpec`` holds the options (face encoder and its weights, detector, tracking, audio
encoder and its weights and options);
``Extractor`` is the one place where an extractor is assembled from a spec: the features stage,
prediction and the benchmark all build theirs with it. ``ExtractionRecord`` is the one owner of
``extraction.yaml``, written into every extraction folder and copied into every run folder: the
spec, the sha256 and sizes of the model files used, the dataset and corpus, and package
versions. Nothing else parses that file.

An extraction folder is named from its spec (``extraction_folder``), so the extraction that
matches a spec is found by name, never by picking the newest folder.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

from common import files
from common.config import config_values, from_values, option
from extract.audio import MelConfig
from extract.audio_encoders import (
    AUDIO_ENCODERS,
    AUDIO_NORMS,
    PRECISIONS,
    AudioEncoderConfig,
    make_audio_encoder,
)
from extract.clip_media import ClipMedia, TrackConfig
from extract.face_detection import HaarFaceDetector, MediaPipeFaceDetector
from extract.face_encoders import FACE_ENCODERS, make_face_encoder
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, model_path, sha256_of
from extract.shards import ClipFeatures, FeatureError

EXTRACTION_FILE = "extraction.yaml"
DETECTORS = ("mediapipe", "haar")
PACKAGES = ("torch", "torchaudio", "torchvision", "av", "opencv-contrib-python", "mediapipe", "numpy", "h5py",
            "transformers", "timm", "opensmile")
RENAMED_OPTIONS = {"encoder": "face_encoder", "encoder_weights": "face_weights"}
# Where the weights' file or folder lives differs between machines; its sha256 is what is compared.
WEIGHT_PATHS = ("face_weights", "audio_weights")


@dataclass
class ExtractionSpec:
    """The options that determine the features (not where or how fast they are computed)."""

    face_encoder: str = option("fer", f"face encoder: {', '.join(FACE_ENCODERS)} (fer runs offline; the others "
                                      "need a weights file, README \"Encoders\")")
    face_weights: str = option("", "weights file for the face encoder (resnet18, enet_b0, enet_b2)")
    detector: str = option("mediapipe", f"face detector: {' or '.join(DETECTORS)}")
    # README, "Features", has the measurements these two defaults come from.
    min_face_score: float = option(0.55, "ignore detections of a lower confidence (mediapipe; Haar gives none)")
    min_face_size: float = option(0.1, "ignore detections smaller than this fraction of the frame's shorter side")
    # The model averages the video steps anyway (--video-pool): 10, 5 and 4 a second held the demo's
    # test macro-F1, and its visual head's over 3 seeds, at an eighth of every frame's embedding
    # cost (README, "Features" and "Performance").
    face_rate: float = option(4.0, "face steps a second: the face is followed and embedded on every "
                                   "round(fps / rate)-th frame (0: on every frame)")
    # Every fourth kept frame (about once a second) keeps the boxes on the face (README, "Features").
    detect_every: int = option(4, "run the face detector on every k-th kept frame and interpolate between")
    max_gap_frames: int = option(5, "interpolate face boxes across at most this many kept frames without a face")
    crop_margin: float = option(0.15, "face crop margin on each side, as a fraction of the box size")
    n_mels: int = option(80, "mel bands")
    win_ms: float = option(25.0, "log-mel window, milliseconds")
    hop_ms: float = option(10.0, "log-mel hop, milliseconds")
    audio_encoder: str = option("logmel", f"audio encoder: {', '.join(AUDIO_ENCODERS)} (logmel and egemaps run "
                                          "offline; wav2vec2 needs --audio-weights)")
    audio_weights: str = option("", "wav2vec2: a Hugging Face checkpoint folder, or a model name in the Hugging Face "
                                    "cache (never downloaded), e.g. facebook/wav2vec2-large-robust")
    audio_layer: int = option(12, "wav2vec2: take the output of this transformer layer (the reference's 12)")
    audio_norm: str = option("utterance", f"wav2vec2 input standardisation: {', '.join(AUDIO_NORMS)} (fixed: by "
                                          "--audio-norm-mean and --audio-norm-std, as the reference does with its "
                                          "training set's)")
    audio_norm_mean: float = option(0.0, "wav2vec2 with --audio-norm fixed: the samples' mean")
    audio_norm_std: float = option(1.0, "wav2vec2 with --audio-norm fixed: the samples' standard deviation")
    audio_precision: str = option("float32", f"wav2vec2 arithmetic: {', '.join(PRECISIONS)} (the half precisions "
                                             "are meant for the GPU)")
    audio_chunk_seconds: float = option(30.0, "wav2vec2: encode longer clips in chunks of this many seconds")
    audio_context_seconds: float = option(2.0, "wav2vec2: audio added on each side of a chunk, seconds")
    video_features_from: str = option("", "import per-frame video features from this folder instead of extracting "
                                          "them: <clip id>.npy (frames x dim) or <clip id>/<frame number>.npy "
                                          "(extract.imported)")
    video_rate: float = option(0.0, "with --video-features-from: the arrays' frames a second")

    def __post_init__(self) -> None:
        if self.face_encoder not in FACE_ENCODERS:
            raise FeatureError(f"unknown face encoder {self.face_encoder!r}; choose one of "
                               f"{', '.join(FACE_ENCODERS)}")
        if self.audio_encoder not in AUDIO_ENCODERS:
            raise FeatureError(f"unknown audio encoder {self.audio_encoder!r}; choose one of "
                               f"{', '.join(AUDIO_ENCODERS)}")
        if self.audio_norm not in AUDIO_NORMS or self.audio_precision not in PRECISIONS:
            raise FeatureError(f"--audio-norm must be one of {', '.join(AUDIO_NORMS)} and --audio-precision one of "
                               f"{', '.join(PRECISIONS)}")
        if self.audio_layer < 1 or self.audio_norm_std <= 0 or self.audio_chunk_seconds <= 0 \
                or self.audio_context_seconds < 0:
            raise FeatureError("--audio-layer must be at least 1, --audio-norm-std and --audio-chunk-seconds "
                               "positive, --audio-context-seconds at least 0")
        if bool(self.video_features_from) != (self.video_rate > 0):
            raise FeatureError("--video-features-from and --video-rate (the arrays' frames a second) go together")
        if self.detector not in DETECTORS:
            raise FeatureError(f"unknown detector {self.detector!r}; choose one of {', '.join(DETECTORS)}")
        if self.detect_every < 1 or self.max_gap_frames < self.detect_every - 1:
            raise FeatureError("--detect-every must be at least 1 and --max-gap-frames at least detect-every - 1")
        if self.face_rate < 0:
            raise FeatureError("--face-rate must be at least 0 (0: every frame)")
        if not (0 <= self.min_face_score <= 1 and 0 <= self.min_face_size < 1):
            raise FeatureError("--min-face-score must be within 0..1 and --min-face-size within 0..1")
        if self.n_mels < 1 or self.win_ms <= 0 or self.hop_ms <= 0 or self.crop_margin < 0:
            raise FeatureError("--n-mels must be at least 1, --win-ms and --hop-ms positive, --crop-margin at least 0")

    @classmethod
    def of(cls, config) -> ExtractionSpec:
        """The spec part of a stage config that extends ExtractionSpec."""
        return from_values(cls, {name: getattr(config, name) for name in cls.__dataclass_fields__})

    def mel(self) -> MelConfig:
        return MelConfig(self.n_mels, self.win_ms, self.hop_ms)

    def audio(self) -> AudioEncoderConfig:
        return AudioEncoderConfig(self.audio_encoder, self.mel(), self.audio_weights, self.audio_layer,
                                  self.audio_norm, self.audio_norm_mean, self.audio_norm_std, self.audio_precision,
                                  self.audio_chunk_seconds, self.audio_context_seconds)

    def folder_name(self) -> str:
        """<face encoder>-<detector>[-r<face rate>]-k<k>-<audio>-<digest of every option but the weights' paths>,
        where <audio> is mel<n>, egemaps or wav2vec2L<layer>; no -r part for every frame (face_rate 0)."""
        options = {name: value for name, value in asdict(self).items() if name not in WEIGHT_PATHS}
        # Sorted before the dump as well: oyaml (imported by opensmile, through audobject) replaces
        # the dumper's dict representer with one that keeps insertion order whatever sort_keys says,
        # and the digest must not depend on what this process has imported.
        digest = hashlib.sha256(yaml.safe_dump(dict(sorted(options.items())), sort_keys=True).encode()).hexdigest()[:8]
        audio = {"logmel": f"mel{self.n_mels}", "wav2vec2": f"wav2vec2L{self.audio_layer}"}.get(self.audio_encoder,
                                                                                            self.audio_encoder)
        if self.video_features_from:
            return f"imported-{audio}-{digest}"
        rate = f"-r{self.face_rate:g}" if self.face_rate else ""
        return f"{self.face_encoder}-{self.detector}{rate}-k{self.detect_every}-{audio}-{digest}"


def extraction_folder(out_root: Path, dataset: str, spec: ExtractionSpec) -> Path:
    return Path(out_root) / dataset / spec.folder_name()


def find_extraction(out_root: Path, dataset: str, spec: ExtractionSpec, features_dir: str = "") -> Path:
    """The folder named by ``features_dir``, else the one made with ``spec``; FeatureError when it is not there."""
    folder = Path(features_dir) if features_dir else extraction_folder(out_root, dataset, spec)
    if not (folder / EXTRACTION_FILE).is_file():
        how = f"--features-dir {features_dir}" if features_dir else "these feature options"
        raise FeatureError(f"{folder}: no extraction there (no {EXTRACTION_FILE}) for {how}; run "
                           f"make features DATASET={dataset} with the same options first")
    return folder


def open_detector(name: str, model_file: Path | None, min_score: float):
    """A face detector; a context manager (mediapipe's must be closed)."""
    return HaarFaceDetector() if name == "haar" else MediaPipeFaceDetector(model_file, min_score)


@dataclass
class ExtractionRecord:
    """What extraction.yaml holds."""

    spec: ExtractionSpec
    models: dict  # encoder_sha256, face_detector_sha256, crop_size, embedding_dim, audio_sha256, audio_dim, audio_rate
    dataset: str = ""
    corpus_dir: str = ""
    packages: dict = field(default_factory=dict)
    written: str = ""

    def save(self, folder: Path) -> None:
        values = {"spec": config_values(self.spec), "models": self.models, "dataset": self.dataset,
                  "corpus_dir": self.corpus_dir, "packages": self.packages, "written": self.written}
        files.write_text(folder / EXTRACTION_FILE, yaml.safe_dump(values, sort_keys=False))

    @classmethod
    def load(cls, folder: Path) -> ExtractionRecord:
        path = Path(folder) / EXTRACTION_FILE
        if not path.is_file():
            raise FeatureError(f"{path} not found: {folder} is not an extraction folder; run make features")
        try:
            values = yaml.safe_load(path.read_text())
            spec = dict(values["spec"])
            for old, new in RENAMED_OPTIONS.items():  # records written before the audio encoders
                if old in spec:
                    spec.setdefault(new, spec.pop(old))
            spec.setdefault("face_rate", 0.0)  # recorded before face_rate existed: the face was followed on every frame
            spec = from_values(ExtractionSpec, spec)
            models = dict(values["models"])
            if "audio_dim" not in models:  # records written before the audio encoders: theirs was the log-mel
                models.update(audio_sha256="", audio_dim=spec.n_mels, audio_rate=1000.0 / spec.hop_ms)
            return cls(spec=spec, models=models,
                       dataset=values.get("dataset", ""), corpus_dir=values.get("corpus_dir", ""),
                       packages=values.get("packages", {}), written=values.get("written", ""))
        except (yaml.YAMLError, KeyError, TypeError, AttributeError, FeatureError) as error:
            raise FeatureError(f"{path} is damaged or from another version ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''}); delete the folder and run "
                               "make features again") from None

    def differences(self, other: ExtractionRecord) -> list[str]:
        """What makes features of ``other`` differ from these: spec options and model files."""
        mine, theirs = {**asdict(self.spec), **self.models}, {**asdict(other.spec), **other.models}
        for name in WEIGHT_PATHS:
            mine.pop(name), theirs.pop(name)
        return [f"{name} {mine.get(name)!r} there, {theirs.get(name)!r} here"
                for name in sorted(set(mine) | set(theirs)) if mine.get(name) != theirs.get(name)]


class Extractor:
    """The extractor a spec describes: detector file, face encoder, audio encoder and face tracking.

    Workers run ``extract.clip_media.process_clip`` with ``track`` and a detector from
    ``open_detector``; ``features`` then embeds the crops and encodes the audio of any number of
    clips in one batch (on ``device``).
    """

    def __init__(self, spec: ExtractionSpec, device: str = "cpu"):
        self.spec = spec
        weights = Path(spec.face_weights) if spec.face_weights else None
        # Imported video features (extract.imported) need neither a face encoder nor a detector.
        self.encoder = None if spec.video_features_from else make_face_encoder(spec.face_encoder, device, weights)
        self.audio_encoder = make_audio_encoder(spec.audio(), device)
        crop_size = self.encoder.input_size if self.encoder else 0
        self.track = TrackConfig(spec.detect_every, spec.max_gap_frames, crop_size, spec.crop_margin,
                                 self.audio_encoder.min_samples, spec.min_face_size, spec.face_rate,
                                 self.encoder.reads_grey if self.encoder else False)
        self.detector_file = (model_path(FACE_DETECTOR_SHORT_RANGE)
                              if spec.detector == "mediapipe" and self.encoder else None)
        self.seconds: Counter = Counter()  # time spent embedding ("embed") and encoding audio ("mel")

    @property
    def audio_rate(self) -> float:
        return self.audio_encoder.rate

    @property
    def audio_dim(self) -> int:
        return self.audio_encoder.dim

    def record(self, dataset: str = "", corpus_dir: str = "") -> ExtractionRecord:
        # Imported video features record no face encoder (0 and ''); their size is in the index.
        models = {"encoder_sha256": self.encoder.weights_sha256 if self.encoder else "",
                  "face_detector_sha256": sha256_of(self.detector_file) if self.detector_file else "",
                  "crop_size": self.track.crop_size, "embedding_dim": self.encoder.embedding_dim if self.encoder else 0,
                  "audio_sha256": self.audio_encoder.weights_sha256, "audio_dim": self.audio_encoder.dim,
                  "audio_rate": self.audio_encoder.rate}
        packages = {name: metadata.version(name) for name in PACKAGES}
        return ExtractionRecord(self.spec, models, dataset, corpus_dir,
                                {**packages, "audio_encoder": self.audio_encoder.identity},
                                time.strftime("%Y-%m-%d %H:%M:%S"))

    def open_detector(self):
        return open_detector(self.spec.detector, self.detector_file, self.spec.min_face_score)

    def features(self, media: list[ClipMedia]) -> list[ClipFeatures]:
        """The features of clips whose media the workers produced, embedded (unless the workers did) and
        audio-encoded in one batch."""
        tick = time.perf_counter()
        crops = [m.crops for m in media if m.crops is not None]
        embedded = (self.encoder.embed(np.concatenate(crops)) if crops
                    else np.zeros((0, self.encoder.embedding_dim), np.float32))
        if crops:
            self.seconds["embed"] += time.perf_counter() - tick
        tick = time.perf_counter()
        with_audio = [m for m in media if m.audio is not None]
        mels = dict(zip((id(m) for m in with_audio), self.audio_encoder([m.audio for m in with_audio])))
        self.seconds["mel"] += time.perf_counter() - tick
        features, start = [], 0
        for clip in media:
            if clip.embedding is not None:  # embedded by the worker
                features.append(self._clip_features(clip, clip.embedding, mels.get(id(clip))))
                continue
            n_valid = 0 if clip.crops is None else len(clip.crops)
            features.append(self._clip_features(clip, embedded[start:start + n_valid], mels.get(id(clip))))
            start += n_valid
        return features

    def _clip_features(self, media: ClipMedia, embedded: np.ndarray, mel: np.ndarray | None) -> ClipFeatures:
        embedding = np.zeros((len(media.valid), self.encoder.embedding_dim), np.float32)
        embedding[media.valid] = embedded
        return ClipFeatures(
            clip_id=media.job.clip_id, mel=mel if mel is not None else np.zeros((0, self.audio_dim), np.float32),
            embedding=embedding, valid=media.valid, boxes=media.boxes, timestamps=media.timestamps,
            duration=media.duration, fps=media.fps, audio_note=media.audio_note, video_note=media.video_note,
            rotation=media.rotation)
