"""The face encoder interface and its registry: face crops in (BGR uint8, any size), one embedding per crop out.

An encoder is a class registered with ``@FACE_ENCODERS.register``: its ``name`` is the value of
``--face-encoder``, ``input_size`` and ``embedding_dim`` its input and output, ``Options`` its
own options (none so far: the weights file is ``--face-weights`` for every encoder), and
``weights_files`` what ``make models`` lists for it. An encoder loads its weights once, when
constructed (``Encoder(device, weights, batch_size, expected_sha256)``), opens a weights file
only when its sha256 is the one expected (when one is), and refuses to run on weights it could
not fill from its file. ``weights_sha256`` names the file that was loaded, to be stored with the
features it makes. It computes in full float32 on CUDA too (``full_float32``), so that features
made on a GPU are those made on a CPU.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from common.registry import NoOptions, Registry
from extract.model_files import EncoderFile, ModelFileError

DEFAULT_BATCH_SIZE = 128
BATCH_QUANTUM = 16


@contextmanager
def full_float32() -> Iterator[None]:
    """cuDNN convolutions and CUDA matmuls in full float32 inside, the caller's settings after.

    On Ampere and later GPUs cuDNN runs float32 convolutions in TF32 (10-bit mantissa) by default,
    which moved the fer embeddings by up to 1.1e-2 from the CPU's. The settings are global, so
    they are changed only around the encoder's forward pass: training keeps its own precision.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class FaceEncoder(ABC):
    """Embeds face crops. Subclasses set the class attributes and implement the two steps."""

    name: str
    Options: type = NoOptions
    input_size: int  # side of the square, in pixels, that every crop is resized to
    embedding_dim: int
    reads_grey = False  # True when the network reads grey: crops may then be made grey, at no loss
    # Batches are padded to a multiple of this (see _run); an instance may set a smaller one.
    batch_quantum = BATCH_QUANTUM

    def __init__(self, network: nn.Module, weights_sha256: str, device: str, batch_size: int):
        self.network = network.eval()
        self.weights_sha256 = weights_sha256
        self.batch_size = batch_size
        self.to(device)

    def to(self, device: str | torch.device) -> FaceEncoder:
        # Channels-last is oneDNN's fast layout for these small convolutions (README, "Performance").
        self.device = torch.device(device)
        self.network.to(self.device, memory_format=torch.channels_last)
        return self

    def embed(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(N, embedding_dim) float32, one row per crop.

        crops: uint8, an (N, H, W, 3) BGR or (N, H, W, 1) grey array, or a sequence of crops of
        any sizes, each (H, W, 3) BGR, (H, W, 1) or (H, W) grey.
        """
        return self._run(crops, self._embed_batch, self.embedding_dim)

    @classmethod
    @abstractmethod
    def weights_files(cls) -> list[EncoderFile]:
        """What make models lists for the encoder: where its weights are looked for, and how to get them."""

    @abstractmethod
    def _preprocess(self, crop: np.ndarray) -> np.ndarray:
        """One uint8 crop, (H, W, 3) BGR or (H, W) grey, as the network's (C, size, size) float32 input."""

    @abstractmethod
    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim) for a preprocessed batch on the encoder's device."""

    def _run(self, crops, batch_function, width: int) -> np.ndarray:
        crop_list = _crop_list(crops)
        outputs = [np.zeros((0, width), np.float32)]
        for start in range(0, len(crop_list), self.batch_size):
            inputs = np.stack([self._preprocess(crop) for crop in crop_list[start:start + self.batch_size]])
            count = len(inputs)
            # Batches padded to a multiple of BATCH_QUANTUM come in few shapes, so the backend's
            # per-shape kernel caches (oneDNN's) stay small over a long run.
            quantum = self.batch_quantum
            padded = np.zeros((-(-count // quantum) * quantum, *inputs.shape[1:]), inputs.dtype)
            padded[:count] = inputs
            with torch.inference_mode(), full_float32():
                result = batch_function(torch.from_numpy(padded).to(self.device, memory_format=torch.channels_last))
            outputs.append(result[:count].float().cpu().numpy())
        return np.concatenate(outputs)


def _crop_list(crops) -> list[np.ndarray]:
    """The crops one by one, grey ones as (H, W)."""
    # A 3-D array could be one colour crop or a batch of grey ones; refusing it avoids the guess.
    if isinstance(crops, np.ndarray) and crops.ndim != 4:
        raise ValueError(f"a batch of face crops must be (N, H, W, 3) or (N, H, W, 1), not {crops.shape}; "
                         "pass crops of other shapes as a list")
    crop_list = [crop[:, :, 0] if crop.ndim == 3 and crop.shape[2] == 1 else crop for crop in crops]
    for crop in crop_list:
        if crop.dtype != np.uint8 or crop.ndim not in (2, 3) or (crop.ndim == 3 and crop.shape[2] != 3):
            raise ValueError(f"a face crop must be uint8 (H, W, 3) BGR, (H, W, 1) or (H, W) grey, not "
                             f"{crop.dtype} {crop.shape}")
        if min(crop.shape[:2]) == 0:
            raise ValueError(f"empty face crop of shape {crop.shape}")
    return crop_list


def grey(crop: np.ndarray) -> np.ndarray:
    return crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def imagenet_input(crop: np.ndarray, size: int, shrink_by_area: bool = False) -> np.ndarray:
    """A crop as an ImageNet-trained network reads it: RGB (a grey crop repeated into three channels),
    the whole crop resized to ``size`` square (bilinear; by area averaging when shrinking, with
    ``shrink_by_area``), scaled to [0, 1] and normalised by the ImageNet mean and deviation; (3, size, size)."""
    rgb = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB) if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    shrinking = shrink_by_area and min(rgb.shape[:2]) > size
    resized = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return ((resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


FACE_ENCODERS: Registry[FaceEncoder] = Registry("face encoder", ModelFileError)


def make_face_encoder(name: str = "fer", device: str = "cpu", weights: Path | None = None,
                      expected_sha256: str = "") -> FaceEncoder:
    """The encoder called ``name``, on ``device``, with its default weights or those in ``weights``;
    with ``expected_sha256``, only a weights file of that sha256 is opened."""
    return FACE_ENCODERS[name](device=device, weights=weights, expected_sha256=expected_sha256)
