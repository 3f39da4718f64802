"""The audio and video pools follow each encoder's frame rate, from the extraction's index."""
from __future__ import annotations

import pytest

from training.config import TrainingError
from training.stage import TrainStageConfig, pool_for


@pytest.mark.parametrize("audio_rate, video_rate, pools", [
    (100.0, 30.0, (4, 1)),  # log-mel or eGeMAPS, 30 fps video: the built-in defaults
    (50.0, 30.0, (2, 1)),  # wav2vec2
    (50.0, 25.0, (2, 1)),
])
def test_default_pools_bring_the_features_near_25_audio_and_30_video_steps_a_second(audio_rate, video_rate, pools):
    config = TrainStageConfig(preset="none").model_config(80, 135, 6, audio_rate, video_rate)
    assert (config.audio_pool, config.video_pool) == pools


def test_the_demo_presets_rates_keep_its_pools_for_the_log_mel_and_scale_them_for_others():
    values = TrainStageConfig.preset_values(type("Namespace", (), {"preset": "demo", "dataset": "demo"}))
    config = TrainStageConfig(**values)
    log_mel, wav2vec2 = config.model_config(80, 135, 6, 100.0, 30.0), config.model_config(1024, 50, 6, 50.0, 30.0)
    assert (log_mel.audio_pool, log_mel.video_pool) == (16, 6)
    assert (wav2vec2.audio_pool, wav2vec2.video_pool) == (8, 6)


def test_a_pool_given_is_kept_whatever_the_rate():
    config = TrainStageConfig(preset="none", audio_pool=3, video_pool=2).model_config(25, 50, 6, 50.0, 30.0)
    assert (config.audio_pool, config.video_pool) == (3, 2)
    assert pool_for(10.0, 25.0) == 1  # never below one frame


def test_negative_pools_and_rates_are_refused():
    with pytest.raises(TrainingError, match="--audio-pool and --video-pool must be at least 0"):
        TrainStageConfig(audio_pool=-1)
    with pytest.raises(TrainingError, match="--audio-pooled-rate and --video-pooled-rate positive"):
        TrainStageConfig(video_pooled_rate=0)
