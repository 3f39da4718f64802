"""``enet_b0``, ``enet_b2``: the HSEmotion EfficientNets trained on AffectNet, built with timm, from
a weights file put in place by hand (a state dict: ``make convert-face-weights`` turns the pickled
models HSEmotion publishes into one)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import files
from extract.face_encoders.base import DEFAULT_BATCH_SIZE, FACE_ENCODERS, FaceEncoder, imagenet_input
from extract.model_files import (
    EncoderFile,
    ModelFileError,
    checked_sha256,
    file_row,
    load_tensors,
    model_dir,
    sha256_of,
)


class EfficientNetEncoder(FaceEncoder):
    """An EfficientNet of the HSEmotion / EmotiEffLib family (A. Savchenko, "Classifying emotions and
    engagement in online learning based on a single facial expression recognition neural network",
    IEEE Trans. Affective Computing, 2022), built with timm; embedding: the globally pooled features
    before the classifier (1,280 for B0, 1,408 for B2: the face features VAVL feeds its model).

    Architecture: timm's ``tf_efficientnet_b0`` / ``tf_efficientnet_b2`` (TensorFlow "same" padding),
    which HSEmotion fine-tuned from its ``tf_efficientnet_*_ns`` VGGFace2 models. Preprocessing as
    hsemotion's ``HSEmotionRecognizer`` (``facial_emotions.py``, hsemotion 0.3; EmotiEffLib keeps it):
    the RGB crop resized to ``img_size`` (224 for models whose name has ``_b0_``, 260 otherwise),
    scaled to [0, 1], normalised with the ImageNet mean (0.485, 0.456, 0.406) and deviation
    (0.229, 0.224, 0.225). Its ``Resize`` is bilinear; so is cv2.resize here.

    Weights (``--face-weights PATH``, default data/models/<WEIGHTS_FILE>): a state dict (the
    classifier's keys, if any, are dropped). HSEmotion publishes whole pickled models
    (``enet_b2_8_best.pt``, ``enet_b0_8_best_afew.pt``), which are never unpickled here (that runs
    code from the file): ``make convert-face-weights`` turns one into its state dict once, by hand.
    Every weight but the classifier's must be filled from the file. The public files' sha256 are
    not known to this project (they could not be fetched here): the hash of the file used is
    recorded with the features instead.
    """

    architecture: str
    weights_file: str

    def __init__(self, device: str = "cpu", weights: Path | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 expected_sha256: str = ""):
        path = Path(weights) if weights else _default_weights(self.name, self.weights_file)
        digest = checked_sha256(path, expected_sha256)
        super().__init__(load_efficientnet(path, self.architecture, self.embedding_dim), digest, device, batch_size)

    def _preprocess(self, crop: np.ndarray) -> np.ndarray:
        return imagenet_input(crop, self.input_size)

    @classmethod
    def weights_files(cls) -> list[EncoderFile]:
        return [file_row(cls.name, "face", model_dir() / cls.weights_file,
                         f"download {cls.weights_file} from {HSEMOTION_SOURCE}, make convert-face-weights it, or "
                         "pass --face-weights PATH (its sha256 is recorded with the features)")]

    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(batch)


@FACE_ENCODERS.register
class EfficientNetB0Encoder(EfficientNetEncoder):
    name = "enet_b0"
    architecture = "tf_efficientnet_b0"
    weights_file = "enet_b0_8_best_afew.pt"
    input_size = 224
    embedding_dim = 1280


@FACE_ENCODERS.register
class EfficientNetB2Encoder(EfficientNetEncoder):
    name = "enet_b2"
    architecture = "tf_efficientnet_b2"
    weights_file = "enet_b2_8_best.pt"
    input_size = 260
    embedding_dim = 1408


HSEMOTION_SOURCE = "github.com/HSE-asavchenko/face-emotion-recognition, folder models/affectnet_emotions/"
CONVERT_COMMAND = 'make convert-face-weights ARGS="--source FILE --face-encoder enet_b0|enet_b2"'


def _default_weights(name: str, file_name: str) -> Path:
    path = model_dir() / file_name
    if not path.is_file():
        raise ModelFileError(f"{path} is missing (the {name} face encoder's weights, not fetched by the pipeline): "
                             f"download {file_name} from {HSEMOTION_SOURCE} on a machine with internet and put it "
                             "there, or pass --face-weights PATH")
    return path


def load_efficientnet(path: Path, architecture: str, features: int) -> nn.Module:
    """timm's ``architecture`` without its classifier, every weight filled from the state dict in the
    file (strictly; the classifier's keys, if any, are dropped)."""
    import timm

    network = timm.create_model(architecture, pretrained=False, num_classes=0)
    state = load_tensors(path, f"Convert it once, on a machine you trust it on: {CONVERT_COMMAND}")
    state = {key: value for key, value in state.items() if not key.startswith("classifier.")}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        why = " ".join(str(error).split())[:300]
        raise ModelFileError(f"{path} is not a {architecture} ({features} features) state: {why}") from None
    return network.eval()


def convert_pickled_model(source: Path, target: Path) -> str:
    """Write the state dict of the whole pickled model in ``source`` to ``target``; its sha256.

    This unpickles ``source``, which runs whatever code the file names: it is the one place that
    does, run by hand (``make convert-face-weights``) on a file from a source one trusts, so that
    the pipeline itself only ever reads tensors.
    """
    import timm  # noqa: F401  (HSEmotion's pickles name timm's classes)

    try:
        loaded = torch.load(source, map_location="cpu", weights_only=False)
    except Exception as error:  # unpickling raises whatever the file's classes raise
        raise ModelFileError(f"{source}: cannot be unpickled here ({type(error).__name__}: {error}); save its "
                             "state_dict() with the timm that made it and pass that file") from None
    state = loaded.state_dict() if isinstance(loaded, nn.Module) else loaded
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ModelFileError(f"{source} holds a {type(loaded).__name__}, not a model or its state dict")
    with files.atomic_path(target) as temporary:
        torch.save(state, temporary)
    return sha256_of(target)
