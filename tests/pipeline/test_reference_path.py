"""The reference's path end to end, through the command lines: a small generated corpus, audio
features from a locally built wav2vec2 of the reference's width (1,024) and 50-d video features
imported in the reference's one-file-per-frame layout, a state dict with the reference's key
names converted into a run folder, and make eval scoring it. Also the import's frame ordering and
duration check, and the converter's message when the sizes do not fit."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import from_values
from common.files import PARTIAL_SUFFIX
from common.locks import exclusive_lock
from corpora.demo.generate import DemoConfig, generate
from extract.clip_media import ClipJob
from extract.imported import clip_arrays, length_problem, media_seconds
from extract.shards import FeatureError, FeatureStore, shard_files
from extract.spec import ExtractionSpec
from extract.tiny_wav2vec2 import saved_wav2vec2

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_SHAPES = json.loads((ROOT / "tests" / "model" / "fixtures" / "reference_state_shapes.json").read_text())
VIDEO_DIM, VIDEO_RATE = 50, 30.0


def stage(workspace: Path, module: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", f"pipeline.{module}", *args], cwd=workspace, env=environment,
                            capture_output=True, text=True, timeout=600)
    if ok:
        assert result.returncode == 0, f"{module} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def write_frames(folder: Path, features: np.ndarray) -> None:
    """One (dim,) .npy per frame, numbered without padding (frame_10 sorts before frame_2 as text)."""
    folder.mkdir(parents=True)
    for number, frame in enumerate(features):
        np.save(folder / f"frame_{number}.npy", frame)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A two-actor corpus, a width-1024 wav2vec2 saved as users save one, and 50-d frames per clip."""
    workspace = tmp_path_factory.mktemp("reference")
    corpus = workspace / "data" / "raw" / "demo"
    generate(DemoConfig(out_dir=corpus, actors=3, sentences=1, seed=5, workers=2))
    saved_wav2vec2(workspace / "wav2vec2-1024", hidden_size=1024, num_hidden_layers=2, num_attention_heads=8,
                   num_conv_pos_embedding_groups=16)
    rng = np.random.default_rng(0)
    for video in sorted((corpus / "VideoFlash").glob("*.flv")):
        frames = round(media_seconds(ClipJob(video.stem, None, video), None) * VIDEO_RATE)
        write_frames(workspace / "frames" / video.stem, rng.normal(size=(frames, VIDEO_DIM)).astype(np.float32))
    return workspace


AUDIO = ["--audio-encoder", "wav2vec2", "--audio-weights", "wav2vec2-1024", "--audio-layer", "1"]
IMPORT = ["--video-features-from", "frames", "--video-rate", str(VIDEO_RATE)]


def test_a_converted_reference_checkpoint_is_scored_on_wav2vec2_and_imported_features(workspace):
    stage(workspace, "manifest", "--dataset", "demo")
    stage(workspace, "features", "--dataset", "demo", "--device", "cpu", *AUDIO, *IMPORT)
    stage(workspace, "verify_features", "--dataset", "demo", *AUDIO, *IMPORT)
    [features] = (workspace / "data" / "features" / "demo").glob("imported-wav2vec2L1-*")
    generator = torch.Generator().manual_seed(0)
    torch.save({key: torch.randn(shape, generator=generator) for key, shape in REFERENCE_SHAPES.items()},
               workspace / "final_head.pt")
    [manifest] = (workspace / "data" / "manifests" / "demo").glob("*/manifest.csv")
    stage(workspace, "convert_reference", "--source", "final_head.pt", "--out-dir", "runs/reference",
          "--classes", "ANG,DIS,FEA,HAP,NEU,SAD", "--features-dir", str(features), "--manifest", str(manifest.parent))
    evaluated = stage(workspace, "evaluate", "--run-dir", "runs/reference")
    assert "| audio_visual |" in evaluated.stdout
    metrics = json.loads((workspace / "runs" / "reference" / "metrics.json").read_text())
    assert metrics["clips"] > 0 and metrics["missing_clips"] == 0

    refused = stage(workspace, "predict", "--run-dir", "runs/reference", "--video",
                    str(next((workspace / "data" / "raw" / "demo" / "VideoFlash").glob("*.flv"))), ok=False)
    assert refused.returncode != 0 and "video features imported from frames" in refused.stderr


def test_features_of_other_sizes_are_refused_with_the_sizes_the_checkpoint_needs(workspace, tmp_path):
    stage(workspace, "features", "--dataset", "demo", "--device", "cpu", "--audio-encoder", "egemaps", *IMPORT)
    [features] = (workspace / "data" / "features" / "demo").glob("imported-egemaps-*")
    generator = torch.Generator().manual_seed(0)
    torch.save({key: torch.randn(shape, generator=generator) for key, shape in REFERENCE_SHAPES.items()},
               tmp_path / "final_head.pt")
    refused = stage(workspace, "convert_reference", "--source", str(tmp_path / "final_head.pt"), "--out-dir",
                    str(tmp_path / "run"), "--classes", "ANG,DIS,FEA,HAP,NEU,SAD", "--features-dir", str(features),
                    ok=False)
    assert refused.returncode != 0
    assert "25-d audio" in refused.stderr and "needs 1024-d audio features" in refused.stderr
    assert "and 50-d video features" in refused.stderr


def test_frames_are_taken_in_the_order_of_their_numbers(tmp_path):
    features = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    write_frames(tmp_path / "clip", features)
    assert sorted(p.name for p in (tmp_path / "clip").iterdir())[:3] == ["frame_0.npy", "frame_1.npy", "frame_10.npy"]
    np.testing.assert_array_equal(clip_arrays(tmp_path, "clip"), features)
    np.save(tmp_path / "whole.npy", features)
    np.testing.assert_array_equal(clip_arrays(tmp_path, "whole"), features)
    assert clip_arrays(tmp_path, "absent") is None


def test_frame_files_without_a_number_or_with_one_twice_are_refused(tmp_path):
    write_frames(tmp_path / "clip", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "clip" / "frame_001.npy", np.zeros(3, np.float32))
    with pytest.raises(FeatureError, match="frame_1.npy and frame_001.npy are both frame 1|frame_001.npy and "
                                           "frame_1.npy are both frame 1"):
        clip_arrays(tmp_path, "clip")
    write_frames(tmp_path / "other", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "other" / "last.npy", np.zeros(3, np.float32))
    with pytest.raises(FeatureError, match="last.npy has no frame number"):
        clip_arrays(tmp_path, "other")


def test_a_frame_count_that_does_not_fit_the_clip_is_named_with_both_durations():
    assert length_problem(75, 30.0, 2.5) == ""
    assert length_problem(75, 25.0, 2.5) == ("75 frames at 25 a second last 3.00 s, the clip 2.50 s (another "
                                             "--video-rate? arrays of another clip?)")


def test_an_import_goes_through_the_extraction_engine_its_lock_and_its_repair(workspace):
    spec = from_values(ExtractionSpec, {"audio_encoder": "egemaps", "video_features_from": "frames",
                                        "video_rate": VIDEO_RATE})
    folder = workspace / "data" / "features" / "demo" / spec.folder_name()
    stage(workspace, "features", "--dataset", "demo", "--device", "cpu", "--audio-encoder", "egemaps", *IMPORT)
    with exclusive_lock(folder / "part0of1.lock", "a test holding the lock"):
        refused = stage(workspace, "features", "--dataset", "demo", "--audio-encoder", "egemaps", *IMPORT, ok=False)
    assert refused.returncode == 2 and "part0of1.lock" in refused.stderr
    [shard] = shard_files(folder)[:1]
    shutil.copy(shard, folder / "part0of1-twice.h5")  # clips written twice, as two runs at once would
    (folder / f"part0of1-cut.h5.1-0badcafe{PARTIAL_SUFFIX}").write_bytes(b"half a shard")
    again = stage(workspace, "features", "--dataset", "demo", "--audio-encoder", "egemaps", *IMPORT)
    assert "0 clips extracted" in again.stdout
    assert not list(folder.glob(f"*{PARTIAL_SUFFIX}"))
    with FeatureStore(folder) as store:
        ids = store.clip_ids()
    assert len(ids) == len(set(ids)) == 48
