"""``resnet18``: torchvision's ResNet-18 with ImageNet weights. Reads a state-dict file, by default
the one torchvision keeps in the torch hub cache; that file cannot be fetched by the pipeline and
must be put there by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from extract.face_encoders.base import DEFAULT_BATCH_SIZE, FACE_ENCODERS, FaceEncoder, imagenet_input
from extract.model_files import EncoderFile, ModelFileError, checked_sha256, file_row, load_tensors, sha256_of

RESNET18_SHA256_PREFIX = "f37072fd"  # torchvision names its weight files after the start of their sha256
RESNET18_FILE = f"resnet18-{RESNET18_SHA256_PREFIX}.pth"
RESNET18_URL = f"https://download.pytorch.org/models/{RESNET18_FILE}"


@FACE_ENCODERS.register
class ResNet18Encoder(FaceEncoder):
    """ResNet-18 with ImageNet weights; embedding: the 512 average-pooled features before its fc layer.

    Preprocessing: BGR to RGB (a grey crop is repeated into three channels), the whole crop resized
    to 224x224 (area averaging when shrinking, bilinear when enlarging; no centre crop, as the crop
    is already the face), scaled to [0, 1] and normalised with the ImageNet mean and standard
    deviation, as torchvision's weights expect.
    """

    name = "resnet18"
    input_size = 224
    embedding_dim = 512

    def __init__(self, device: str = "cpu", weights: Path | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 expected_sha256: str = ""):
        path = Path(weights) if weights else default_resnet18_weights()
        digest = checked_sha256(path, expected_sha256)
        super().__init__(load_resnet18(path), digest, device, batch_size)

    def _preprocess(self, crop: np.ndarray) -> np.ndarray:
        return imagenet_input(crop, self.input_size, shrink_by_area=True)

    @classmethod
    def weights_files(cls) -> list[EncoderFile]:
        return [file_row(cls.name, "face", hub_weights_path(),
                         f"download {RESNET18_URL} and put it there, or pass --face-weights PATH")]

    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(batch)


def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE


def default_resnet18_weights() -> Path:
    """torchvision's own copy of the ImageNet weights in the torch hub cache, checked by the hash in its name."""
    path = hub_weights_path()
    if not path.exists():
        raise ModelFileError(
            f"{RESNET18_FILE} (torchvision's ImageNet ResNet-18) is not in the torch hub cache and cannot be "
            f"downloaded here: download {RESNET18_URL} on a machine that can reach it and put it at {path}, "
            f"or pass its path with --face-weights PATH")
    if not sha256_of(path).startswith(RESNET18_SHA256_PREFIX):
        raise ModelFileError(f"{path} does not match the sha256 its name promises: delete it and download "
                             f"{RESNET18_URL} again")
    return path


def load_resnet18(path: Path) -> nn.Module:
    """ResNet-18 with every weight from the state dict in ``path`` (strictly), its fc layer removed."""
    from torchvision.models import resnet18

    network = resnet18(weights=None)
    try:
        network.load_state_dict(load_tensors(path), strict=True)
    except RuntimeError as error:
        raise ModelFileError(f"{path} is not a ResNet-18 state dict: {error}") from error
    network.fc = nn.Identity()
    return network.eval()
