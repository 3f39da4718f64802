"""Fixtures of the stage tests that run real face detection."""
from __future__ import annotations

import pytest

from extract.model_files import FACE_DETECTOR_SHORT_RANGE, ModelFileError, model_path


@pytest.fixture(scope="module")
def face_model():
    """Skip the module, saying why, when the pinned mediapipe face model is not on this machine."""
    try:
        model_path(FACE_DETECTOR_SHORT_RANGE, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"mediapipe face model not available: {error}")
