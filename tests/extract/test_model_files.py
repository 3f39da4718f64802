"""Model files are used only when they match their pinned sha256, and say what to do otherwise."""
from __future__ import annotations

import pytest
import torch

from extract import model_files
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, ModelFileError, load_tensors, model_path, sha256_of


def test_installed_face_model_matches_its_pin():
    try:
        path = model_path(FACE_DETECTOR_SHORT_RANGE, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"not fetched on this machine ({error})")
    assert sha256_of(path) == FACE_DETECTOR_SHORT_RANGE.sha256


def test_a_tampered_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(model_files.MODEL_DIR_VARIABLE, str(tmp_path))
    (tmp_path / FACE_DETECTOR_SHORT_RANGE.name).write_bytes(b"not a tflite model")
    with pytest.raises(ModelFileError, match="delete it and run `make models`.*mediapipe==0.10.21"):
        model_path(FACE_DETECTOR_SHORT_RANGE)


def test_a_missing_file_without_fetching_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(model_files.MODEL_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(ModelFileError, match="run `make models`.*pip download mediapipe==0.10.21"):
        model_path(FACE_DETECTOR_SHORT_RANGE, fetch=False)


def test_files_in_torchs_format_before_1_6_are_read_as_tensors_only(tmp_path):
    """MTCNN's weights were saved so; a whole model saved so is still refused, never unpickled."""
    layer = torch.nn.Linear(2, 3)
    torch.save(layer.state_dict(), tmp_path / "weights.pt", _use_new_zipfile_serialization=False)
    torch.save(layer, tmp_path / "model.pt", _use_new_zipfile_serialization=False)
    assert load_tensors(tmp_path / "weights.pt").keys() == {"weight", "bias"}
    with pytest.raises(ModelFileError, match="holds pickled objects"):
        load_tensors(tmp_path / "model.pt")
