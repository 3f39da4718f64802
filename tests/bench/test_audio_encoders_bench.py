"""The benchmark's audio encoder rows: which encoders, the tiny wav2vec2 it builds in its work
folder, real extractions with each through the benchmark's child processes, and their aim."""
from __future__ import annotations

import pytest

from bench.audio_encoders import encoder_list, extraction_values, run_audio_encoders
from bench.report import aims, render_markdown
from bench.run import BenchConfig, validate
from bench.runner import BenchError, Runner
from extract.audio_encoders import make_audio_encoder
from extract.audio_encoders.wav2vec2 import Wav2Vec2Options
from tests.bench.test_bench import synthetic_results


def test_the_log_mel_comes_first_and_unknown_encoders_are_refused_before_anything_runs():
    assert encoder_list("wav2vec2, egemaps,wav2vec2") == ["logmel", "wav2vec2", "egemaps"]
    assert encoder_list("") == []
    with pytest.raises(BenchError, match="not mfcc"):
        validate(BenchConfig(audio_encoders="egemaps,mfcc"))


def test_the_tiny_wav2vec2_is_built_once_in_the_work_folder_and_loads(tmp_path):
    values = extraction_values("wav2vec2", tmp_path)
    weights = next(tmp_path.glob("models/tiny-wav2vec2/*.safetensors"))
    built = weights.stat().st_mtime_ns
    assert extraction_values("wav2vec2", tmp_path) == values and weights.stat().st_mtime_ns == built
    options = Wav2Vec2Options(audio_weights=values["audio_weights"], audio_layer=values["audio_layer"])
    assert make_audio_encoder("wav2vec2", options).dim == 32
    assert extraction_values("egemaps", tmp_path) == {"audio_encoder": "egemaps"}


def test_each_encoder_extracts_the_same_clips_in_child_processes(demo_corpus, tmp_path, face_model):
    records = run_audio_encoders(Runner(tmp_path / "run", "cpu"), demo_corpus, tmp_path / "run" / "a2", "a2", 2, 1,
                                 ["logmel", "wav2vec2"], tmp_path)
    logmel, wav2vec2 = records
    assert [r["encoder"] for r in records] == ["logmel", "wav2vec2"] and len(wav2vec2["rounds"]) == 1
    assert logmel["full"]["clips"] == wav2vec2["full"]["clips"] > 0
    assert "mel80" in logmel["full"]["features"] and "wav2vec2L4" in wav2vec2["full"]["features"]
    assert wav2vec2["full"]["parts"]["audio_encoding"] > 0


def test_the_egemaps_aim_is_the_ratio_of_the_medians_with_each_rounds():
    results = synthetic_results()
    full = {"clips": 96, "parts": {"audio_encoding": 1.5}, "peak_mb": {"main": 700, "largest_child": 500}}
    results["audio_encoders"] = [
        {"encoder": encoder, "label": "a6", "workers": 2, "full": {**full, "seconds": sorted(rounds)[1]},
         "rounds": rounds}
        for encoder, rounds in (("logmel", [2.0, 2.0, 2.2]), ("egemaps", [2.4, 2.8, 2.4]), ("wav2vec2", [3, 4, 4]))]
    (row,) = [row for row in aims(results) if "eGeMAPS" in row["aim"]]
    assert row["met"] and row["verdict"].startswith("met (1.20x, aim at most 1.30x)")
    assert "each round's ratio: 1.20x, 1.40x, 1.09x" in row["verdict"]
    results["audio_encoders"][1]["full"]["seconds"] = 3.0
    (row,) = [row for row in aims(results) if "eGeMAPS" in row["aim"]]
    assert not row["met"] and row["verdict"].startswith("missed by 1.15x (1.50x")
    markdown = render_markdown({**results, "aims": aims(results)})
    assert "## Audio encoders" in markdown and "| wav2vec2 | 2 | 96 | 4.0 | 2.00x | 1.50x, 2.00x, 1.82x |" in markdown
