"""A small but real training setup, shared by the training, evaluation and prediction tests.

A CREMA-D-style corpus folder of empty media files (the reader only lists names), its manifest
from corpora.registry (4 actors: 2 train, 1 development, 1 test), and HDF5 shards written with
extract.shards whose log-mels and embeddings are noise around a per-class pattern, so a small
model learns them in a few epochs. Some clips of every speaker have no audio or no face.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from common.config import from_values
from corpora.manifest import load_manifest
from corpora.registry import ManifestConfig, build_manifest
from extract.engine import write_failures
from extract.shards import ClipFeatures, FeatureStore, ShardWriter, build_index
from extract.spec import ExtractionRecord, ExtractionSpec
from model.auxformer import AuxFormerConfig
from model.data import ClipDataset

ACTORS = {1001: "Male", 1002: "Female", 1003: "Male", 1004: "Female"}
SENTENCES = ("TIE", "IOM", "IWW", "TAI")
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
N_MELS, EMBEDDING_DIM = 16, 12
FEATURES_NAME = "synthetic-mel16"
# Clips of every speaker that exercise missing modalities: no audio, and no face on any frame.
NO_AUDIO = ("IWW", "SAD")
NO_FACE = ("TAI", "NEU")
TINY = dict(width=8, num_heads=2, num_layers=1, aux_hidden_dims=(16,))
FAST = dict(batch_size=16, lr=1e-2, num_workers=0, device="cpu")
TINY_STAGE_ARGS = ["--width", "8", "--num-heads", "2", "--num-layers", "1", "--batch-size", "16",
                   "--lr", "0.01", "--num-workers", "0", "--device", "cpu", "--preset", "none",
                   "--features-dir", f"data/features/demo/{FEATURES_NAME}"]


def write_corpus(root: Path) -> None:
    """A CREMA-D folder whose media files are empty: enough for the reader, which lists names."""
    for folder in ("AudioWAV", "VideoFlash"):
        (root / folder).mkdir(parents=True)
    for actor in ACTORS:
        for sentence in SENTENCES:
            for emotion in EMOTIONS:
                clip_id = f"{actor}_{sentence}_{emotion}_XX"
                (root / "AudioWAV" / f"{clip_id}.wav").touch()
                (root / "VideoFlash" / f"{clip_id}.flv").touch()
    with (root / "VideoDemographics.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        writer.writerows([actor, 30, sex, "", ""] for actor, sex in ACTORS.items())


def synthetic_clip(clip_id: str, class_index: int, rng: np.random.Generator,
                   patterns: tuple[np.ndarray, np.ndarray]) -> ClipFeatures:
    audio_pattern, video_pattern = patterns
    audio_frames = int(rng.integers(12, 30))
    video_frames = audio_frames // 3
    mel = audio_pattern[class_index] + rng.normal(0, 0.7, (audio_frames, audio_pattern.shape[1]))
    embedding = video_pattern[class_index] + rng.normal(0, 0.7, (video_frames, EMBEDDING_DIM))
    valid = rng.random(video_frames) > 0.2
    _, sentence, emotion, _ = clip_id.split("_")
    if (sentence, emotion) == NO_AUDIO:
        mel = mel[:0]
    if (sentence, emotion) == NO_FACE:
        valid[:] = False
    embedding[~valid] = 0.0
    boxes = np.where(valid[:, None], 10.0, np.nan) * np.ones((video_frames, 4))
    return ClipFeatures(clip_id, mel.astype(np.float32), embedding.astype(np.float32), valid, boxes.astype(np.float32),
                        np.arange(video_frames) / 30.0, audio_frames / 100, 30.0)


def write_features(folder: Path, manifest, skip: set[str], n_mels: int = N_MELS) -> None:
    """Shards, index and an extraction.yaml of synthetic features (their spec says ``n_mels`` bands)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    patterns = (rng.normal(0, 1, (6, n_mels)), rng.normal(0, 1, (6, EMBEDDING_DIM)))
    spec = from_values(ExtractionSpec, {"n_mels": n_mels})
    writer = ShardWriter(folder, "part0of1", 40, n_mels, EMBEDDING_DIM, 100.0, spec.folder_name())
    for clip in manifest.clips:
        if clip.clip_id not in skip:
            writer.add(synthetic_clip(clip.clip_id, manifest.meta.classes.index(clip.label), rng, patterns))
    writer.flush()
    build_index(folder)
    # The clips left out are those the extraction could not use, as a real one lists them.
    write_failures(folder / "failures-part0of1.csv", [(clip_id, "no audio file; no video file") for clip_id in skip])
    models = {"encoder_sha256": "synthetic", "face_detector_sha256": "", "crop_size": 0, "embedding_dim": EMBEDDING_DIM}
    ExtractionRecord(spec, models, dataset="demo").save(folder)


class Setup:
    """Paths of the fixture, relative to its workspace (the stage runs there)."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.corpus = workspace / "corpus"
        write_corpus(self.corpus)
        self.manifest_dir, _ = build_manifest(ManifestConfig(dataset="demo", corpus_dir=str(self.corpus),
                                                             manifests_dir=workspace / "data" / "manifests"))
        self.manifest = load_manifest(self.manifest_dir)
        self.skipped = self.manifest.in_split("train")[0].clip_id
        self.features = workspace / "data" / "features" / "demo" / FEATURES_NAME
        write_features(self.features, self.manifest, skip={self.skipped})

    def data(self, split: str, store: FeatureStore | None = None) -> ClipDataset:
        return ClipDataset(store or FeatureStore(self.features), self.manifest.in_split(split),
                           self.manifest.meta.classes, soft_targets=False)

    def model_config(self) -> AuxFormerConfig:
        return AuxFormerConfig(audio_dim=N_MELS, video_dim=EMBEDDING_DIM, n_classes=6, **TINY)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("training"))
