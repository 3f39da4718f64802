"""RAVDESS through every stage's command line, on the demo corpus written in RAVDESS's layout; a run
trained on the demo corpus (CREMA-D's layout) scored on it, cross-corpus; and a labelled corpus (a
labels CSV over the demo's clips) through every stage."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corpora.demo.generate import DemoConfig, generate

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = ["--epochs", "1", "--width", "8", "--num-heads", "2", "--num-layers", "1", "--num-workers", "0",
              "--device", "cpu"]
EXTRACT = ["--workers", "2", "--device", "cpu"]
RAVDESS_CLIP = "data/raw/demo-ravdess/Actor_01/01-01-05-02-01-01-01.mp4"

pytestmark = pytest.mark.usefixtures("face_model")


def stage(workspace: Path, module: str, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", f"pipeline.{module}", *args], cwd=workspace, env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == code, f"{module} exited {result.returncode}:\n{result.stdout[-2000:]}\n" \
                                      f"{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Three actors of the demo corpus in each layout, where make demo-data puts them."""
    workspace = tmp_path_factory.mktemp("ravdess-workspace")
    for layout, folder in (("crema", "demo"), ("ravdess", "demo-ravdess")):
        generate(DemoConfig(out_dir=workspace / "data" / "raw" / folder, layout=layout, actors=3, sentences=1,
                            seed=5, workers=2))
    return workspace


def test_every_stage_runs_on_the_ravdess_layout(workspace):
    crema6 = ["--dataset", "demo-ravdess", "--label-set", "crema6"]
    stage(workspace, "manifest", *crema6)
    stage(workspace, "features", "--dataset", "demo-ravdess", *EXTRACT)
    stage(workspace, "train", *crema6, *TINY_MODEL)
    run = workspace / "runs" / "demo-ravdess" / "p1-crema6" / "auxformer"
    stage(workspace, "evaluate", *crema6)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["clips"] > 0 and metrics["classes"] == ["angry", "sad", "disgust", "fear", "neutral", "happy"]
    stage(workspace, "predict", *crema6, "--video", RAVDESS_CLIP, "--device", "cpu")
    (prediction,) = json.loads((run / "predictions" / f"{Path(RAVDESS_CLIP).stem}.json").read_text())["predictions"]
    assert prediction["modalities"] == "audio+video"


def test_a_demo_run_is_scored_on_the_ravdess_layout_by_class_name(workspace):
    stage(workspace, "manifest", "--dataset", "demo")
    stage(workspace, "features", "--dataset", "demo", *EXTRACT, "--face-rate", "5")
    stage(workspace, "train", "--dataset", "demo", "--features", "--face-rate 5", *TINY_MODEL)
    across = ["--dataset", "demo", "--on-dataset", "demo-ravdess", "--on-split", "all"]
    refused = stage(workspace, "evaluate", *across, code=2)
    assert 'make features DATASET=demo-ravdess FEATURES="--face-rate 5.0"' in refused.stderr
    stage(workspace, "features", "--dataset", "demo-ravdess", *EXTRACT, "--face-rate", "5")
    scored = stage(workspace, "evaluate", *across)
    assert "demo-ravdess classes the model lacks, clips left out: calm (0 clips), surprise (0 clips)" in scored.stdout
    run = workspace / "runs" / "demo" / "p1" / "auxformer"
    folder = run / "cross" / "demo-ravdess-all"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["clips"] == 48 and metrics["class_mapping"]["dataset_only"] == ["calm", "surprise"]
    assert set(metrics["classes"]) == {"angry", "sad", "disgust", "fear", "neutral", "happy"}
    assert "restricted to these before the argmax" in (folder / "report.md").read_text()
    assert (folder / "confusion.png").is_file() and not (run / "metrics.json").exists()


def test_every_stage_runs_on_a_labelled_corpus(workspace):
    """The demo's clips of one level, labelled by a CSV kept outside the corpus folder."""
    lines = ["video,audio,label,speaker"]
    for actor in (1001, 1002, 1003):
        for emotion, level in (("NEU", "XX"), ("ANG", "LO"), ("HAP", "LO"), ("SAD", "LO")):
            clip = f"{actor}_IEO_{emotion}_{level}"
            lines.append(f"VideoFlash/{clip}.flv,AudioWAV/{clip}.wav,{emotion.lower()},actor{actor}")
    (workspace / "data" / "labels.csv").write_text("\n".join(lines) + "\n")
    corpus = ["--dataset", "labelled", "--corpus-dir", "data/raw/demo", "--labels", "data/labels.csv"]
    stage(workspace, "manifest", *corpus)
    stage(workspace, "features", *corpus, *EXTRACT)
    stage(workspace, "train", *corpus, *TINY_MODEL)
    stage(workspace, "evaluate", "--dataset", "labelled")
    run = workspace / "runs" / "labelled" / "p1" / "auxformer"
    assert json.loads((run / "metrics.json").read_text())["classes"] == ["ang", "hap", "neu", "sad"]
    stage(workspace, "predict", "--dataset", "labelled", "--video", "data/raw/demo/VideoFlash/1001_IEO_SAD_LO.flv",
          "--device", "cpu")
