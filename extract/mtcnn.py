"""MTCNN (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks"): three small networks in a cascade, run on CPU in PyTorch.

- P-Net, fully convolutional, slides a 12-pixel window (stride 2) over an image pyramid and
  proposes boxes where it thinks a face is;
- R-Net looks again at each proposal, cut out and resized to 24 pixels, and keeps the surer ones;
- O-Net does the same at 48 pixels and gives the final boxes and scores.

Each stage's scores are a softmax over (not a face, a face); each regresses its boxes' corners by
fractions of their sides; after P-Net and R-Net the boxes are made square (the next net's input
is) and overlapping ones are suppressed. The weights are those of the facenet-pytorch wheel
(extract.model_files.MTCNN_PNET...), converted from the authors' Caffe models; the networks are
rebuilt here because that package pins an old torch.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from extract.model_files import ModelFileError, load_tensors

# The published cascade's score thresholds for P-Net, R-Net and O-Net.
THRESHOLDS = (0.6, 0.7, 0.7)
# Each pyramid level is this much smaller than the one above (about a halving of the area).
PYRAMID_STEP = 0.709
P_NET_WINDOW, P_NET_STRIDE = 12, 2
# Suppression IoUs: within one pyramid level, across levels, after R-Net; after O-Net the overlap is
# measured against the smaller box, so that a box inside a face's box (a part of it) goes too.
LEVEL_NMS, PYRAMID_NMS, R_NET_NMS, O_NET_NMS = 0.5, 0.7, 0.7, 0.7


def _normalised(pixels: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB as the networks were trained on: (pixel - 127.5) / 128, channels first."""
    return torch.from_numpy((pixels.astype(np.float32) - 127.5) / 128).permute(0, 3, 1, 2)


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        # Caffe's pooling rounds the output size up: floor mode would lose the last row and column.
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per 12-pixel window (stride 2): the face probability (N, H', W') and corner offsets (N, 4, H', W')."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """Feature maps flattened in the order the dense layers were trained on: width slowest, then
    height, then channel. The Caffe models saw transposed images; the converted convolutions take
    upright ones (on every third frame of 24 of bench.photo_scenes' clips, 136 of 144 faces were
    found upright, 56 transposed), but the dense layers' weights still read the features in the
    transposed order (flattened as channel, height, width, O-Net found ten faces on the cat photo,
    and its box of the astronaut's was off)."""
    return x.permute(0, 3, 2, 1).flatten(1)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per 24-pixel crop: the face probability (N,) and corner offsets (N, 4)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flat(self.prelu3(self.conv3(x)))))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        # dense6_3 gives five facial landmarks, which nothing here uses; it is kept so that the
        # state dict loads strictly, as a check that the file is O-Net's.
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per 48-pixel crop: the face probability (N,) and corner offsets (N, 4)."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flat(self.prelu4(self.conv4(x)))))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x)


def _loaded(network: nn.Module, path: Path) -> nn.Module:
    try:
        network.load_state_dict(load_tensors(path), strict=True)
    except RuntimeError as error:  # keys or shapes of another network
        raise ModelFileError(f"{path} is not {type(network).__name__}'s state dict: "
                             f"{' '.join(str(error).split())[:200]}") from None
    return network.eval()


def pyramid_scales(height: int, width: int, min_face: int) -> list[float]:
    """The scales at which P-Net's 12-pixel window covers faces from ``min_face`` pixels up to the
    picture's shorter side."""
    first = P_NET_WINDOW / min_face
    levels = math.floor(math.log(P_NET_WINDOW / (min(height, width) * first), PYRAMID_STEP)) + 1
    return [first * PYRAMID_STEP ** level for level in range(max(levels, 0))]


def suppressed(boxes: np.ndarray, overlap: float, against_smaller: bool = False) -> np.ndarray:
    """Indices of the boxes ((N, 5): x1, y1, x2, y2, score) that no surer box overlaps by more than
    ``overlap`` (IoU; or intersection over the smaller box's area), surest first."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        low, high = np.maximum(boxes[best, :2], boxes[rest, :2]), np.minimum(boxes[best, 2:4], boxes[rest, 2:4])
        inter = np.prod(np.clip(high - low, 0, None), axis=1)
        base = np.minimum(areas[best], areas[rest]) if against_smaller else areas[best] + areas[rest] - inter
        order = rest[inter <= overlap * np.maximum(base, 1e-9)]
    return np.array(kept, dtype=int)


def regressed(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The boxes with each corner moved by the net's offsets, fractions of the box's width and height."""
    sides = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return np.concatenate([boxes[:, :4] + offsets * sides, boxes[:, 4:]], axis=1)


def squared(boxes: np.ndarray) -> np.ndarray:
    """The boxes made square about their centres, on their longer side (the next net's input is square)."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    x, y = (boxes[:, 0] + boxes[:, 2] - side) / 2, (boxes[:, 1] + boxes[:, 3] - side) / 2
    return np.concatenate([np.stack([x, y, x + side, y + side], axis=1), boxes[:, 4:]], axis=1)


def crops(picture: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3): each box cut out of the picture, black where it lies outside, and resized."""
    height, width = picture.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for index, (x1, y1, x2, y2) in enumerate(np.round(boxes[:, :4]).astype(int)):
        cut = np.zeros((max(y2 - y1, 1), max(x2 - x1, 1), 3), np.uint8)
        left, top, right, bottom = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if right > left and bottom > top:
            cut[top - y1:bottom - y1, left - x1:right - x1] = picture[top:bottom, left:right]
        # Area averaging when shrinking, so that a large face's crop skips no pixels; bilinear when growing.
        shrinking = cut.shape[1] > size
        out[index] = cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return out


class Mtcnn:
    """The cascade, with its three networks' weights files; ``detect`` gives (N, 5) boxes: x1, y1, x2, y2, score."""

    def __init__(self, files: tuple[Path, Path, Path], min_face: int = 20, min_score: float = THRESHOLDS[2]):
        self._pnet, self._rnet, self._onet = (_loaded(network, path) for network, path in
                                             zip((PNet(), RNet(), ONet()), files, strict=True))
        self._min_face, self._min_score = min_face, min_score

    @torch.inference_mode()
    def detect(self, picture: np.ndarray) -> np.ndarray:
        """Faces in an (H, W, 3) uint8 RGB picture, surest first."""
        boxes = self._proposals(picture)
        if len(boxes):
            boxes = squared(self._refined(self._rnet, picture, boxes, 24, THRESHOLDS[1], R_NET_NMS))
        if len(boxes):
            boxes = self._refined(self._onet, picture, boxes, 48, self._min_score, O_NET_NMS, against_smaller=True)
        return boxes

    def _proposals(self, picture: np.ndarray) -> np.ndarray:
        """P-Net's boxes over the pyramid, suppressed, regressed and squared."""
        height, width = picture.shape[:2]
        found = [self._level(picture, scale) for scale in pyramid_scales(height, width, self._min_face)]
        boxes = np.concatenate(found) if found else np.zeros((0, 9), np.float32)
        boxes = boxes[suppressed(boxes, PYRAMID_NMS)] if len(boxes) else boxes
        return squared(regressed(boxes[:, :5], boxes[:, 5:]))

    def _level(self, picture: np.ndarray, scale: float) -> np.ndarray:
        """P-Net's windows above its threshold at one scale, as (N, 9): box in the picture's pixels,
        score, offsets; suppressed within the level."""
        height, width = picture.shape[:2]
        # Bilinear, not area averaging: with area averaging P-Net proposed, and O-Net took (0.85),
        # the collar under the astronaut's face (data/models/astronaut.png); it is also the faster.
        level = cv2.resize(picture, (math.ceil(width * scale), math.ceil(height * scale)),
                           interpolation=cv2.INTER_LINEAR)
        probability, offsets = self._pnet(_normalised(level[None]))
        rows, columns = np.nonzero(probability[0].numpy() >= THRESHOLDS[0])
        corners = np.stack([columns, rows], axis=1).astype(np.float32) * P_NET_STRIDE
        boxes = np.concatenate([corners / scale, (corners + P_NET_WINDOW) / scale,
                                probability[0].numpy()[rows, columns, None],
                                offsets[0].numpy()[:, rows, columns].T], axis=1)
        return boxes[suppressed(boxes, LEVEL_NMS)] if len(boxes) else boxes

    @staticmethod
    def _refined(network: nn.Module, picture: np.ndarray, boxes: np.ndarray, size: int, threshold: float,
                 overlap: float, against_smaller: bool = False) -> np.ndarray:
        """The boxes the network scores at least ``threshold``, with its scores, suppressed, then regressed."""
        probability, offsets = network(_normalised(crops(picture, boxes, size)))
        keep = probability.numpy() >= threshold
        scored = np.concatenate([boxes[keep, :4], probability.numpy()[keep, None]], axis=1)
        kept = suppressed(scored, overlap, against_smaller) if keep.any() else np.zeros(0, int)
        return regressed(scored[kept], offsets.numpy()[keep][kept])
