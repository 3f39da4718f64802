"""One contract for every registered face encoder, audio encoder and face detector, run over the
registries themselves: a member registered without a way to build it here fails the test that
lists them. Each gives outputs of the size it declares, float32 and finite, the same for an input
alone and among others, and the same twice. Members with weights use real files of their kind
built here (random weights of the real architecture), loaded the way users load them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from corpora.demo.actors import make_actors
from extract.audio import SAMPLE_RATE
from extract.audio_encoders import AUDIO_ENCODERS, make_audio_encoder
from extract.audio_encoders.wav2vec2 import Wav2Vec2Options
from extract.face_detection import DETECTORS, open_detector
from extract.face_encoders import FACE_ENCODERS, make_face_encoder
from extract.model_files import ModelFileError, model_path
from extract.tiny_wav2vec2 import saved_wav2vec2

# Crops and clips batched together differ from one alone by float32 rounding of other shapes.
BATCH_TOLERANCE = 1e-4
timm = pytest.importorskip("timm")


def resnet18_file(folder: Path) -> Path:
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), folder / "resnet18.pth")
    return folder / "resnet18.pth"


def efficientnet_file(architecture: str):
    def build(folder: Path) -> Path:
        torch.manual_seed(0)
        path = folder / f"{architecture}.pt"
        torch.save(timm.create_model(architecture, pretrained=False, num_classes=8).state_dict(), path)
        return path
    return build


# How each face encoder gets its weights here: None for its own default file (the pinned one).
FACE_WEIGHTS = {"fer": None, "resnet18": resnet18_file, "enet_b0": efficientnet_file("tf_efficientnet_b0"),
                "enet_b2": efficientnet_file("tf_efficientnet_b2")}


def tiny_wav2vec2(folder: Path) -> Wav2Vec2Options:
    saved_wav2vec2(folder / "wav2vec2", num_hidden_layers=2)
    return Wav2Vec2Options(audio_weights=str(folder / "wav2vec2"), audio_layer=2)


# How each audio encoder gets its options here: None for its defaults.
AUDIO_OPTIONS = {"logmel": None, "egemaps": None, "compare": None, "wav2vec2": tiny_wav2vec2}


def test_every_registered_member_is_covered_here():
    assert set(FACE_ENCODERS) == set(FACE_WEIGHTS)
    assert set(AUDIO_ENCODERS) == set(AUDIO_OPTIONS)
    assert set(DETECTORS) == {"mediapipe", "mediapipe-cascade", "haar", "mtcnn"}


CLIP = "1001_IEO_NEU_XX"  # of the session's demo corpus (tests/conftest.py), whose actors are seed 7's


@pytest.fixture(scope="module")
def demo_frame(demo_corpus) -> tuple[np.ndarray, object]:
    """A decoded frame of a demo clip, and the drawn face's style (where the face is)."""
    capture = cv2.VideoCapture(str(demo_corpus / "VideoFlash" / f"{CLIP}.flv"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame, {a.actor_id: a for a in make_actors(2, seed=7)}[int(CLIP[:4])].face


def face_crops(demo_frame, count: int) -> list[np.ndarray]:
    """The demo face cut at several sizes, and noise."""
    frame, style = demo_frame
    x, y = int(style.centre[0]), int(style.centre[1])
    crops = [np.ascontiguousarray(frame[y - size:y + size, x - size:x + size]) for size in (40, 56, 72, 90)]
    rng = np.random.default_rng(1)
    crops += [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(count - len(crops))]
    return crops[:count]


@pytest.fixture(scope="module", params=sorted(FACE_WEIGHTS))
def face_encoder(request, tmp_path_factory):
    build = FACE_WEIGHTS[request.param]
    weights = build(tmp_path_factory.mktemp(request.param)) if build else None
    try:
        return make_face_encoder(request.param, "cpu", weights)
    except ModelFileError as error:
        pytest.skip(f"{request.param}: its default weights are not on this machine: {error}")


def test_a_face_encoder_keeps_its_contract(face_encoder, demo_frame):
    crops = face_crops(demo_frame, 5)
    embedded = face_encoder.embed(crops)
    assert embedded.shape == (5, face_encoder.embedding_dim) and embedded.dtype == np.float32
    assert np.isfinite(embedded).all() and np.ptp(embedded, axis=0).max() > 0  # crops give different rows
    np.testing.assert_allclose(face_encoder.embed(crops[2:3]), embedded[2:3], atol=BATCH_TOLERANCE)
    np.testing.assert_array_equal(face_encoder.embed(crops), embedded)
    assert len(face_encoder.weights_sha256) == 64
    assert face_encoder.embed([]).shape == (0, face_encoder.embedding_dim)


def speech_like(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 130 + 40 * np.sin(2 * np.pi * 0.5 * t) + 10 * seed
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / SAMPLE_RATE) / k for k in range(1, 6))
    return (0.2 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2) + 0.01 * rng.normal(size=len(t))
            ).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(AUDIO_OPTIONS))
def audio_encoder(request, tmp_path_factory):
    build = AUDIO_OPTIONS[request.param]
    options = build(tmp_path_factory.mktemp(request.param)) if build else None
    return make_audio_encoder(request.param, options)


def test_an_audio_encoder_keeps_its_contract(audio_encoder):
    clips = [speech_like(1.2, 0), speech_like(0.7, 1), speech_like(2.0, 2)]
    encoded = audio_encoder(clips)
    for clip, frames in zip(clips, encoded):
        assert frames.ndim == 2 and frames.shape[1] == audio_encoder.dim and frames.dtype == np.float32
        assert np.isfinite(frames).all()
        # One frame each 1 / rate seconds, to within the encoder's window.
        assert abs(len(frames) / audio_encoder.rate - len(clip) / SAMPLE_RATE) < 0.1
    [alone] = audio_encoder(clips[1:2])
    np.testing.assert_allclose(alone, encoded[1], atol=BATCH_TOLERANCE)
    for again, first in zip(audio_encoder(clips), encoded):
        np.testing.assert_array_equal(again, first)
    [short] = audio_encoder([np.zeros(audio_encoder.min_samples, np.float32) + 1e-3])
    assert len(short) >= 1 and np.isfinite(short).all()  # the shortest audio it takes gives a frame


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def detector(request):
    member = DETECTORS[request.param]
    try:
        model_files = tuple(model_path(pinned, fetch=False) for pinned in member.model_files)
    except ModelFileError as error:
        pytest.skip(f"{request.param}: its model file is not on this machine: {error}")
    with open_detector(request.param, member.Options(), model_files) as opened:
        yield opened


def test_a_detector_keeps_its_contract(detector, demo_frame):
    frame, style = demo_frame
    boxes = detector.detect(frame)
    assert boxes, "the drawn demo face is found"
    box = max(boxes, key=lambda b: b.area)
    centre = np.array([box.x + box.width / 2, box.y + box.height / 2])
    assert np.linalg.norm(centre - np.array(style.centre)) < style.half_width
    assert 0 < box.score <= 1 and all(np.isfinite([box.x, box.y, box.width, box.height]))
    assert detector.detect(frame) == boxes  # the same twice
    assert detector.detect(np.zeros_like(frame)) == []
