"""Model files are used only when they match their pinned sha256, and say what to do otherwise."""
from __future__ import annotations

import pytest

from extract import model_files
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, ModelFileError, model_path, sha256_of


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
