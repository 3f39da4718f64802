"""The whole pipeline through its command lines, as a user runs it: a generated corpus, then
manifest, features, verify, train, eval and predict, each a separate process reading only what
the previous one wrote; and a run folder that still predicts after it is copied elsewhere and
the features are moved away."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corpora.demo.generate import DemoConfig, generate

ROOT = Path(__file__).resolve().parents[2]
CLIP = "1001_IEO_ANG_HI"
# The demo preset's settings, with a smaller, shorter model so that the test takes seconds.
TRAIN_OVERRIDES = ["--epochs", "2", "--width", "16", "--num-heads", "2", "--num-layers", "1", "--num-workers", "0",
                   "--device", "cpu"]

pytestmark = pytest.mark.usefixtures("face_model")


def stage(workspace: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", f"pipeline.{module}", *args], cwd=workspace, env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{module} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A working directory with a three-actor demo corpus where make demo-data would put it."""
    workspace = tmp_path_factory.mktemp("workspace")
    generate(DemoConfig(out_dir=workspace / "data" / "raw" / "demo", actors=3, sentences=1, seed=5, workers=2))
    return workspace


# What mediapipe's native code prints unless the stages silence it.
NATIVE_LOG_MARKS = ("LiteRT", "TensorFlow Lite", "InitGoogle")


@pytest.fixture(scope="module")
def trained_run(workspace) -> Path:
    stage(workspace, "manifest", "--dataset", "demo")
    extracted = stage(workspace, "features", "--dataset", "demo", "--workers", "2", "--device", "cpu")
    assert not any(mark in extracted.stderr for mark in NATIVE_LOG_MARKS), extracted.stderr[-2000:]
    stage(workspace, "verify_features", "--dataset", "demo")
    stage(workspace, "train", "--dataset", "demo", *TRAIN_OVERRIDES)
    return workspace / "runs" / "demo" / "p1" / "auxformer"


def test_every_stage_runs_from_the_files_the_previous_one_wrote(workspace, trained_run):
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    training = config["stage"]["training"]  # the stage's config, recorded in its parts
    assert training["lr"] == 3e-4 and training["lr_schedule"] == "cosine"  # the demo preset
    assert training["epochs"] == 2  # overridden on the command line
    assert config["environment"]["packages"]["torch"] and "device" in config["environment"]
    assert (trained_run / "extraction.yaml").is_file()
    for name in ("best.pt", "last.pt", "train.log", "metrics.csv", "curve.png"):
        assert (trained_run / name).is_file(), name

    evaluated = stage(workspace, "evaluate", "--dataset", "demo")
    assert "| audio_visual |" in evaluated.stdout
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["clips"] > 0 and set(metrics["results"]) == {"audio_visual", "audio_only", "video_only"}

    video = workspace / "data" / "raw" / "demo" / "VideoFlash" / f"{CLIP}.flv"
    predicted = stage(workspace, "predict", "--dataset", "demo", "--video", str(video), "--device", "cpu")
    assert not any(mark in predicted.stderr for mark in NATIVE_LOG_MARKS), predicted.stderr[-2000:]
    verbose = stage(workspace, "predict", "--dataset", "demo", "--video", str(video), "--device", "cpu", "--verbose")
    assert any(mark in verbose.stderr for mark in NATIVE_LOG_MARKS)
    (prediction,) = json.loads((trained_run / "predictions" / f"{CLIP}.json").read_text())["predictions"]
    assert prediction["modalities"] == "audio+video" and prediction["emotion"]


def test_a_copied_run_folder_predicts_the_same_without_the_features(workspace, trained_run, tmp_path):
    video = workspace / "data" / "raw" / "demo" / "VideoFlash" / f"{CLIP}.flv"
    stage(workspace, "predict", "--run-dir", str(trained_run), "--video", str(video), "--out-dir",
          str(tmp_path / "here"), "--device", "cpu")
    copy = tmp_path / "elsewhere" / "auxformer"
    shutil.copytree(trained_run, copy)
    features = workspace / "data" / "features"
    features.rename(workspace / "data" / "features-away")
    try:
        stage(tmp_path, "predict", "--run-dir", str(copy), "--video", str(video), "--out-dir",
              str(tmp_path / "there"), "--device", "cpu")
    finally:
        (workspace / "data" / "features-away").rename(features)
    here = json.loads((tmp_path / "here" / f"{CLIP}.json").read_text())["predictions"][0]
    there = json.loads((tmp_path / "there" / f"{CLIP}.json").read_text())["predictions"][0]
    assert there["probabilities"] == here["probabilities"] and there["emotion"] == here["emotion"]
