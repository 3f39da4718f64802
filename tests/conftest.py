"""Shared fixtures: a small demo corpus, generated once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from corpora.demo.generate import DemoConfig, generate

# Two actors (one of each sex), the levelled sentence IEO and one more: 44 clips, every emotion.
SMALL_DEMO = {"actors": 2, "sentences": 2, "seed": 7}


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    generate(DemoConfig(out_dir=out, workers=2, **SMALL_DEMO))
    return out
