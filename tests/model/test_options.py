"""The model options: pools given as a window or as steps a second follow each encoder's frame
rate (from the extraction's index); values out of range are one-line errors."""
from __future__ import annotations

import pytest

from common.config import parse_config
from model.auxformer import ModelConfigError
from model.options import ModelOptions, pool_window
from training.stage import TrainStageConfig


@pytest.mark.parametrize("audio_rate, video_rate, pools", [
    (100.0, 30.0, (4, 1)),  # log-mel or eGeMAPS, 30 fps video: the built-in defaults
    (50.0, 30.0, (2, 1)),  # wav2vec2
    (50.0, 25.0, (2, 1)),
])
def test_default_pools_bring_the_features_near_25_audio_and_30_video_steps_a_second(audio_rate, video_rate, pools):
    config = ModelOptions().model_config(80, 135, 6, audio_rate, video_rate)
    assert (config.audio_pool, config.video_pool) == pools


def test_the_demo_presets_rates_keep_its_pools_for_the_log_mel_and_scale_them_for_others():
    options = parse_config(TrainStageConfig, ["--preset", "demo"]).model_options
    log_mel, wav2vec2 = options.model_config(80, 135, 6, 100.0, 30.0), options.model_config(1024, 50, 6, 50.0, 30.0)
    assert (log_mel.audio_pool, log_mel.video_pool) == (16, 6)
    assert (wav2vec2.audio_pool, wav2vec2.video_pool) == (8, 6)


def test_a_window_given_is_kept_whatever_the_rate():
    config = ModelOptions(audio_pool="3", video_pool="2").model_config(25, 50, 6, 50.0, 30.0)
    assert (config.audio_pool, config.video_pool) == (3, 2)
    assert pool_window("25/s", 10.0) == 1  # never below one frame


@pytest.mark.parametrize("options, message", [
    ({"audio_pool": "-1"}, "--audio-pool '-1': a window of at least 1 frame"),
    ({"video_pool": "0/s"}, "--video-pool '0/s'"),
    ({"audio_pool": "nan/s"}, "--audio-pool 'nan/s'"),
    ({"width": 7, "num_heads": 2}, "--width must be within 4..4096 and divisible by --num-heads"),
    ({"width": 100_000, "num_heads": 10}, "--width must be within 4..4096"),
    ({"embed_dropout": float("nan")}, r"--embed-dropout must be in \[0, 1\)"),
    ({"missing_stand_in": "noise"}, "--missing-stand-in must be one of zero, learned"),
])
def test_values_that_make_no_model_are_refused_naming_the_option(options, message):
    with pytest.raises(ModelConfigError, match=message):
        ModelOptions(**options)
