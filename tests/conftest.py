"""Shared fixtures: a small demo corpus, generated once per test session, and the pinned face model."""
from __future__ import annotations

from pathlib import Path

import pytest

from corpora.demo.generate import DemoConfig, generate
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, ModelFileError, model_path

# Two actors (one of each sex), the levelled sentence IEO and one more: 44 clips, every emotion.
SMALL_DEMO = {"actors": 2, "sentences": 2, "seed": 7}


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    generate(DemoConfig(out_dir=out, workers=2, **SMALL_DEMO))
    return out


@pytest.fixture(scope="module")
def face_model() -> Path:
    """The pinned mediapipe face model; skips the module, saying why, when it is not on this machine."""
    try:
        return model_path(FACE_DETECTOR_SHORT_RANGE, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"mediapipe face model not available: {error}")
