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
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

from common import files
from common.config import check_within, config_values, from_values, option, part
from common.errors import ProjectError
from common.registry import Registry
from extract.audio_encoders import AUDIO_ENCODERS, make_audio_encoder
from extract.clip_media import ClipMedia, TrackConfig
from extract.face_detection import DETECTORS, open_detector
from extract.face_encoders import FACE_ENCODERS, make_face_encoder
from extract.face_track import FACE_SELECTIONS
from extract.model_files import model_path, sha256_of
from extract.shards import ClipFeatures, FeatureError

EXTRACTION_FILE = "extraction.yaml"
PACKAGES = ("torch", "torchaudio", "torchvision", "av", "opencv-contrib-python", "mediapipe", "numpy", "h5py",
            "transformers", "timm", "opensmile")
RENAMED_OPTIONS = {"encoder": "face_encoder", "encoder_weights": "face_weights"}
# Where the face encoder's weights file lives differs between machines; its sha256 is what is compared.
FACE_WEIGHTS = "face_weights"
# The registries whose chosen member's options are part of the spec, by the spec field that chooses it.
CHOSEN_BY = {"face_encoder": FACE_ENCODERS, "detector": DETECTORS, "audio_encoder": AUDIO_ENCODERS}


def _finite_at_least(value: float, low: float) -> bool:
    return math.isfinite(value) and value >= low


class _SpecMethods:
    """What an ExtractionSpec does; its fields are declared below, from the registries."""

    def __post_init__(self) -> None:
        for chooser, registry in CHOSEN_BY.items():
            registry[getattr(self, chooser)]  # an unknown name is one line listing the known ones
        if bool(self.video_features_from) != (self.video_rate > 0):
            raise FeatureError("--video-features-from and --video-rate (the arrays' frames a second) go together")
        if self.face_select not in FACE_SELECTIONS:
            raise FeatureError(f"--face-select must be one of {', '.join(FACE_SELECTIONS)}, got {self.face_select!r}")
        check_within("detect_every", self.detect_every, 1, MAX_TRACK_FRAMES, FeatureError)
        check_within("max_gap_frames", self.max_gap_frames, self.detect_every - 1, MAX_TRACK_FRAMES, FeatureError)
        if not _finite_at_least(self.face_rate, 0) or self.face_rate > MAX_FACE_RATE:
            raise FeatureError(f"--face-rate must be within 0..{MAX_FACE_RATE:g} (0: every frame), got "
                               f"{self.face_rate}")
        if not 0 <= self.min_face_size < 1:
            raise FeatureError(f"--min-face-size must be within 0..1, got {self.min_face_size}")
        if not (_finite_at_least(self.crop_margin, 0) and self.crop_margin <= MAX_CROP_MARGIN):
            raise FeatureError(f"--crop-margin must be within 0..{MAX_CROP_MARGIN:g}, got {self.crop_margin}")
        if not (_finite_at_least(self.video_rate, 0) and self.video_rate <= MAX_FACE_RATE):
            raise FeatureError(f"--video-rate must be within 0..{MAX_FACE_RATE:g}, got {self.video_rate}")

    def options_of(self, chooser: str):
        """The options of the member chosen by ``chooser`` (face_encoder, detector, audio_encoder)."""
        name = getattr(self, chooser)
        return getattr(self, _part_name(name)) if _part_name(name) in _PARTS else CHOSEN_BY[chooser][name].Options()

    def effective(self) -> dict:
        """The options that decide the features: the general ones and the chosen members' own, but
        not the paths of weights on this machine (their sha256 is recorded instead)."""
        values = {name: getattr(self, name) for name in GENERAL_OPTIONS if name != FACE_WEIGHTS}
        for chooser, registry in CHOSEN_BY.items():
            machine_paths = getattr(registry[getattr(self, chooser)], "machine_paths", ())
            values.update({name: value for name, value in asdict(self.options_of(chooser)).items()
                           if name not in machine_paths})
        return values

    def folder_name(self) -> str:
        """<face encoder>-<detector>[-r<face rate>]-k<k>-<audio>-<digest of the effective options>, where
        <audio> is the audio encoder's part (mel<n>, egemaps, wav2vec2L<layer>...); no -r part for every
        frame (face_rate 0); imported-<audio>-<digest> for imported video features."""
        # Sorted before the dump as well: oyaml (imported by opensmile, through audobject) replaces
        # the dumper's dict representer with one that keeps insertion order whatever sort_keys says,
        # and the digest must not depend on what this process has imported.
        options = dict(sorted(self.effective().items()))
        digest = hashlib.sha256(yaml.safe_dump(options, sort_keys=True).encode()).hexdigest()[:8]
        audio = AUDIO_ENCODERS[self.audio_encoder].folder_part(self.options_of("audio_encoder"))
        if self.video_features_from:
            return f"imported-{audio}-{digest}"
        rate = f"-r{self.face_rate:g}" if self.face_rate else ""
        return f"{self.face_encoder}-{self.detector}{rate}-k{self.detect_every}-{audio}-{digest}"


# At most this many face steps a second (no video runs faster), and crops at most this many times
# the box on each side: larger values only multiply the pixels decoded and embedded.
MAX_FACE_RATE = 1000.0
MAX_CROP_MARGIN = 2.0
MAX_TRACK_FRAMES = 1000  # detection steps and interpolated gaps: over 30 s at 30 frames a second


@dataclass
class _GeneralOptions:
    face_encoder: str = option("fer", f"face encoder: {FACE_ENCODERS.choices()} (fer runs offline; the others "
                                      "need a weights file, README \"Encoders\")")
    face_weights: str = option("", "weights file for the face encoder (resnet18, enet_b0, enet_b2)")
    detector: str = option("mediapipe-cascade", f"face detector: {DETECTORS.choices()}")
    # README, "Features", has the measurements this default comes from.
    min_face_size: float = option(0.04, "ignore detections smaller than this fraction of the frame's shorter side")
    # The model averages the video steps anyway (--video-pool): 10, 5 and 4 a second held the demo's
    # test macro-F1, and its visual head's over 3 seeds, at an eighth of every frame's embedding
    # cost (README, "Features" and "Performance").
    face_rate: float = option(4.0, "face steps a second: the face is followed and embedded on every "
                                   "round(fps / rate)-th frame (0: on every frame)")
    # Every fourth kept frame (about once a second) keeps the boxes on the face (README, "Features").
    detect_every: int = option(4, "run the face detector on every k-th kept frame and interpolate between")
    max_gap_frames: int = option(5, "interpolate face boxes across at most this many kept frames without a face")
    face_select: str = option("largest", f"with several faces in view, the person followed: the "
                                         f"{' or '.join(FACE_SELECTIONS)} face on the first frame with one, then the "
                                         "face that continues its track (extract.face_track)")
    crop_margin: float = option(0.15, "face crop margin on each side, as a fraction of the box size")
    audio_encoder: str = option("logmel", f"audio encoder: {AUDIO_ENCODERS.choices()} (all but wav2vec2 run "
                                          "offline; wav2vec2 needs --audio-weights)")
    video_features_from: str = option("", "import per-frame video features from this folder instead of extracting "
                                          "them: <clip id>.npy (frames x dim) or <clip id>/<frame number>.npy "
                                          "(extract.imported)")
    video_rate: float = option(0.0, "with --video-features-from: the arrays' frames a second")


GENERAL_OPTIONS = tuple(field.name for field in fields(_GeneralOptions))


def _part_name(member: str) -> str:
    return member.replace("-", "_")


def _member_parts(registries: list[Registry]) -> list[tuple[str, type, object]]:
    """A part for each registered member that has options of its own, named after the member."""
    return [(_part_name(name), member.Options, part(member.Options))
            for registry in registries for name, member in registry.items() if fields(member.Options)]


_PARTS = {name for name, _, _ in _member_parts(list(CHOSEN_BY.values()))}
ExtractionSpec = make_dataclass(
    "ExtractionSpec",
    [(f.name, f.type, f) for f in fields(_GeneralOptions)] + _member_parts(list(CHOSEN_BY.values())),
    bases=(_SpecMethods,))
ExtractionSpec.__module__ = __name__
ExtractionSpec.__doc__ = """The options that determine the features (not where or how fast they are computed): the
general ones, and a part per registered audio encoder, face encoder and detector with options of
its own (``logmel``, ``wav2vec2``, ``mediapipe``...), whose options are options of the features
stage by their own names. Only the chosen members' parts decide the features (``effective``)."""


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


@dataclass
class ExtractionRecord:
    """What extraction.yaml holds."""

    spec: ExtractionSpec
    models: dict  # encoder_sha256, face_detector_sha256, crop_size, embedding_dim, audio_sha256, audio_dim, audio_rate
    dataset: str = ""
    corpus_dir: str = ""
    packages: dict = field(default_factory=dict)
    written: str = ""
    # The folder name the spec gave when the features were made: an edited spec no longer gives it,
    # while a renamed folder still loads. Empty in records written before it was kept.
    folder: str = ""

    def save(self, folder: Path) -> None:
        values = {"spec": config_values(self.spec), "models": self.models, "dataset": self.dataset,
                  "corpus_dir": self.corpus_dir, "packages": self.packages, "written": self.written,
                  "folder": self.folder or self.spec.folder_name()}
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
            spec = from_values(ExtractionSpec, spec)  # by option name (before the registries) or in parts
            models = dict(values["models"])
            if "audio_dim" not in models:  # records written before the audio encoders: theirs was the log-mel
                models.update(audio_sha256="", audio_dim=spec.logmel.n_mels,
                              audio_rate=1000.0 / spec.logmel.hop_ms)
            record = cls(spec=spec, models=models,
                         dataset=values.get("dataset", ""), corpus_dir=values.get("corpus_dir", ""),
                         packages=values.get("packages", {}), written=values.get("written", ""),
                         folder=str(values.get("folder", "")))
        except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError, AttributeError, ValueError,
                ProjectError) as error:
            raise FeatureError(f"{path} is damaged or from another version ({type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else ''}); delete the folder and run "
                               "make features again") from None
        if record.folder and record.folder != spec.folder_name():
            raise FeatureError(f"{path} was edited: its options name the extraction {spec.folder_name()}, but the "
                               f"features beside it were made as {record.folder}; put back the original "
                               f"{EXTRACTION_FILE}, or run make features with the options you want (a new folder)")
        return record

    def differences(self, other: ExtractionRecord) -> list[str]:
        """What makes features of ``other`` differ from these: spec options and model files."""
        mine, theirs = {**self.spec.effective(), **self.models}, {**other.spec.effective(), **other.models}
        return [f"{name} {mine.get(name)!r} there, {theirs.get(name)!r} here"
                for name in sorted(set(mine) | set(theirs)) if mine.get(name) != theirs.get(name)]


class Extractor:
    """The extractor a spec describes: detector file, face encoder, audio encoder and face tracking.

    Workers run ``extract.clip_media.process_clip`` with ``track`` and a detector from
    ``open_detector``; ``features`` then embeds the crops and encodes the audio of any number of
    clips in one batch (on ``device``).
    """

    def __init__(self, spec: ExtractionSpec, device: str = "cpu", recorded_models: dict | None = None):
        """``recorded_models``: the ``models`` of the record the features were made with; a weights file of
        another sha256 is then refused before it is opened."""
        self.spec = spec
        recorded = recorded_models or {}
        weights = Path(spec.face_weights) if spec.face_weights else None
        # Imported video features (extract.imported) need neither a face encoder nor a detector.
        self.encoder = None if spec.video_features_from else make_face_encoder(
            spec.face_encoder, device, weights, recorded.get("encoder_sha256", ""))
        self.audio_encoder = make_audio_encoder(spec.audio_encoder, spec.options_of("audio_encoder"), device,
                                                recorded.get("audio_sha256", ""))
        crop_size = self.encoder.input_size if self.encoder else 0
        self.track = TrackConfig(spec.detect_every, spec.max_gap_frames, crop_size, spec.crop_margin,
                                 self.audio_encoder.min_samples, spec.min_face_size, spec.face_rate,
                                 self.encoder.reads_grey if self.encoder else False, spec.face_select)
        self.detector_files = tuple(model_path(pinned) for pinned in DETECTORS[spec.detector].model_files
                                    if self.encoder)
        self.seconds: Counter = Counter()  # time spent embedding ("embed") and encoding audio ("audio_encoding")

    @property
    def audio_rate(self) -> float:
        return self.audio_encoder.rate

    @property
    def audio_dim(self) -> int:
        return self.audio_encoder.dim

    def record(self, dataset: str = "", corpus_dir: str = "") -> ExtractionRecord:
        # Imported video features record no face encoder (0 and ''); their size is in the index.
        models = {"encoder_sha256": self.encoder.weights_sha256 if self.encoder else "",
                  "face_detector_sha256": ",".join(sha256_of(path) for path in self.detector_files),
                  "crop_size": self.track.crop_size, "embedding_dim": self.encoder.embedding_dim if self.encoder else 0,
                  "audio_sha256": self.audio_encoder.weights_sha256, "audio_dim": self.audio_encoder.dim,
                  "audio_rate": self.audio_encoder.rate}
        packages = {name: metadata.version(name) for name in PACKAGES}
        return ExtractionRecord(self.spec, models, dataset, corpus_dir,
                                {**packages, "audio_encoder": self.audio_encoder.identity},
                                time.strftime("%Y-%m-%d %H:%M:%S"))

    def open_detector(self):
        return open_detector(self.spec.detector, self.spec.options_of("detector"), self.detector_files)

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
        with_audio = [m for m in media if m.audio is not None and m.audio_features is None]
        encoded = dict(zip((id(m) for m in with_audio), self.audio_encoder([m.audio for m in with_audio])))
        encoded.update((id(m), m.audio_features) for m in media if m.audio_features is not None)
        self.seconds["audio_encoding"] += time.perf_counter() - tick
        features, start = [], 0
        for clip in media:
            if clip.embedding is not None:  # embedded by the worker
                features.append(self._clip_features(clip, clip.embedding, encoded.get(id(clip))))
                continue
            n_valid = 0 if clip.crops is None else len(clip.crops)
            features.append(self._clip_features(clip, embedded[start:start + n_valid], encoded.get(id(clip))))
            start += n_valid
        return features

    def _clip_features(self, media: ClipMedia, embedded: np.ndarray, audio: np.ndarray | None) -> ClipFeatures:
        embedding = np.zeros((len(media.valid), self.encoder.embedding_dim), np.float32)
        embedding[media.valid] = embedded
        return ClipFeatures(
            clip_id=media.job.clip_id, audio=audio if audio is not None else np.zeros((0, self.audio_dim), np.float32),
            embedding=embedding, valid=media.valid, boxes=media.boxes, timestamps=media.timestamps,
            duration=media.duration, fps=media.fps, audio_note=media.audio_note, video_note=media.video_note,
            rotation=media.rotation, faces=media.faces)
