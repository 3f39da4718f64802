"""AuxFormer (Goncalves and Busso, ICASSP 2022): the audiovisual network and its config.

Data flow, for a batch of clips with an audio sequence and a video sequence each::

    audio (B, Ta, audio_dim) -> 1x1 conv -> (B, Ta, width) -+-> audio_with_video -> audio_fusion -+
                                                           |                                     |
    video (B, Tv, video_dim) -> 1x1 conv -> (B, Tv, width) -+-> video_with_audio -> video_fusion -+
                                                                                                 |
    last valid steps of both fusions, concatenated (2 * width) -> fusion_head -> audio-visual logits
    projected audio -> audio_auxiliary x3 -> last valid step -> auxiliary_head -> audio logits
    projected video -> video_auxiliary x3 -> last valid step -> auxiliary_head -> visual logits

A 1x1 convolution is applied only to an input whose size differs from ``width``, as the
reference does (it projects its 1024-d audio and uses its 50-d video as is). The two
cross-modal transformers (queries from one modality, keys and values from the other) add
sinusoidal positions; the others do not. The fusion transformers mix each residual branch as
``a * x + (1 - a) * branch`` with a learnable scalar ``a`` per layer. Each auxiliary
transformer is one set of weights applied three times in a row, and one head (shared weights)
classifies both auxiliary branches. Training combines the three outputs' losses, and random
modality drop-out teaches the model to cope with a missing modality; both are left to the
training code.

Where this model differs from the reference implementation (github.com/ilucasgoncalves/AuxFormer):

* Padding. The reference has no padding masks and reads each clip's representation at the
  last *padded* step, so a clip's prediction changes with the clips it is batched with. Here
  every attention has a key padding mask, the causal mask uses each clip's own lengths, and the
  representation is read at the last *valid* step: predictions do not depend on batching. On a
  batch without padding both compute the same function (model/convert_reference.py maps the
  weights), up to the positions of steps whose first feature is exactly 0 (next point).
* Positions. The reference gives a step no positional embedding when its first feature is
  exactly 0 (a leftover of fairseq's token padding); here padding is known from the lengths,
  so every valid step gets its position and only padding gets none.
* Missing modality. The reference's modality drop-out (its train.py) multiplies the dropped
  input by zero: the video features, or the audio waveform before its wav2vec2 encoder. Here a
  missing modality is given as length 0 (its tensor may have any number of steps, even 0, and
  its content is ignored): it is attended as one all-zero step with no positional embedding,
  which is what the reference's transformers see at each step of zeroed features, and it
  never produces NaN in the forward pass. A zero-filled sequence with a non-zero length is
  ordinary data. That all-zero step puts every LayerNorm it meets at zero variance, where the
  backward pass multiplies by 1/sqrt(eps): a head trained on a missing modality's stand-in
  overflows to NaN within a few layers. ``missing_stand_in="learned"`` replaces the zero step
  with a learned vector per modality (``audio_missing``, ``video_missing``, at model width),
  which keeps every norm's variance above zero, so a missing modality's head can be trained.
  The default, ``"zero"``, is the reference's arithmetic (and that of configs written before the
  option existed).
* Any audio and video sizes (the reference fixes 1024 and 50), an explicit config instead of
  an argparse namespace, and batch-first tensors.
* Input standardisation. Each input feature is standardised with a mean and standard deviation
  held in the model (buffers ``audio_standardization.*`` and ``video_standardization.*``),
  which training sets from the training split (``set_input_statistics``) and which travel with
  every checkpoint. They start as the identity, which is what the reference computes.
* Optional temporal pooling (``audio_pool``, ``video_pool``; 1, the reference's, by default).
  The reference reads wav2vec2 features at 50 steps a second; a 10 ms log-mel has 100, and
  every attention costs memory and time in the square of the steps. Pooling averages each
  window of that many valid steps (a clip's last window over the steps it has), so it too is
  independent of batching.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import ProjectError
from model.attention import TransformerEncoder

# The reference applies each auxiliary transformer (one set of weights) this many times in a row.
AUXILIARY_PASSES = 3



class ModelConfigError(ProjectError, ValueError):
    """Model sizes or rates that make no AuxFormer; the message names the option."""


# Far beyond any AuxFormer trained (the reference's: 50 wide, 5 layers): a typo such as --width
# 50000 is refused before it takes a machine's memory.
MAX_WIDTH, MAX_LAYERS = 4096, 64
MISSING_STAND_INS = ("zero", "learned")
DROPOUT_FIELDS = ("attn_dropout", "cross_attn_dropout", "relu_dropout", "res_dropout", "embed_dropout", "out_dropout")


@dataclass
class AuxFormerConfig:
    """Sizes and regularisation of AuxFormer; the defaults are the reference's.

    ``attn_dropout`` applies to the self-attention transformers; the reference fixes the
    cross-modal ones at ``cross_attn_dropout`` = 0. ``aux_hidden_dims`` are the hidden sizes of
    the shared auxiliary head (the reference's 512 and 256). ``causal_mask`` is the reference's
    ``attn_mask`` (on unless ``--attn_mask`` is given). ``audio_pool`` and ``video_pool`` average
    each input over windows of that many steps before its projection (1: none, as the reference).
    """

    audio_dim: int = 1024
    video_dim: int = 50
    n_classes: int = 6
    width: int = 50
    num_heads: int = 10
    num_layers: int = 5
    aux_hidden_dims: tuple[int, ...] = (512, 256)
    attn_dropout: float = 0.1
    cross_attn_dropout: float = 0.0
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    embed_dropout: float = 0.25
    out_dropout: float = 0.2
    causal_mask: bool = True
    audio_pool: int = 1
    video_pool: int = 1
    missing_stand_in: str = "zero"

    def __post_init__(self) -> None:
        self.aux_hidden_dims = tuple(self.aux_hidden_dims)
        sizes = {"audio_dim": self.audio_dim, "video_dim": self.video_dim, "n_classes": self.n_classes,
                 "num_heads": self.num_heads, "num_layers": self.num_layers, "audio_pool": self.audio_pool,
                 "video_pool": self.video_pool}
        for name, size in sizes.items():
            if size < 1:
                raise ModelConfigError(f"{_flag(name)} must be at least 1, got {size}")
        # The sinusoid frequencies divide by width // 2 - 1.
        if self.width < 4 or self.width % self.num_heads or self.width > MAX_WIDTH or self.num_layers > MAX_LAYERS:
            raise ModelConfigError(f"--width must be within 4..{MAX_WIDTH} and divisible by --num-heads, and "
                                   f"--num-layers at most {MAX_LAYERS}; got width {self.width}, {self.num_heads} "
                                   f"heads, {self.num_layers} layers")
        if not self.aux_hidden_dims or min(self.aux_hidden_dims) < 1:
            raise ModelConfigError(f"aux_hidden_dims must be positive sizes, got {self.aux_hidden_dims}")
        for name in DROPOUT_FIELDS:
            if not 0.0 <= getattr(self, name) < 1.0:  # also false for NaN
                raise ModelConfigError(f"{_flag(name)} must be in [0, 1), got {getattr(self, name)}")
        if self.missing_stand_in not in MISSING_STAND_INS:
            raise ModelConfigError(f"--missing-stand-in must be one of {', '.join(MISSING_STAND_INS)}, "
                             f"got {self.missing_stand_in!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, for checkpoints and run folders."""
        values = asdict(self)
        values["aux_hidden_dims"] = list(self.aux_hidden_dims)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AuxFormerConfig:
        """The config ``to_dict`` wrote; a missing field takes its default, an unknown one is an error."""
        unknown = sorted(set(values) - {field.name for field in fields(cls)})
        if unknown:
            raise ModelConfigError(f"unknown AuxFormerConfig fields: {', '.join(unknown)}")
        return cls(**values)


class AuxFormerOutputs(NamedTuple):
    """Logits (B, n_classes) of the three heads: main (audio-visual), audio and visual (auxiliary)."""

    main: torch.Tensor
    audio: torch.Tensor
    visual: torch.Tensor


class ResidualHead(nn.Module):
    """MLP back to the input size, added to its input, then a linear classifier.

    ReLU and dropout follow every layer of the MLP except the last, as in the reference's heads.
    """

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...], n_classes: int, dropout: float):
        super().__init__()
        sizes = (in_dim, *hidden_dims, in_dim)
        self.layers = nn.ModuleList(nn.Linear(size_in, size_out) for size_in, size_out in zip(sizes, sizes[1:]))
        self.classifier = nn.Linear(in_dim, n_classes)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = x
        for layer in self.layers[:-1]:
            hidden = F.dropout(F.relu(layer(hidden)), p=self.dropout, training=self.training)
        return self.classifier(self.layers[-1](hidden) + x)


class Standardization(nn.Module):
    """(x - mean) / std per feature, with the statistics as buffers saved in the state dict."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class AuxFormer(nn.Module):
    """AuxFormer on padded batches; see the module docstring for the architecture."""

    def __init__(self, config: AuxFormerConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.audio_standardization = Standardization(config.audio_dim)
        self.video_standardization = Standardization(config.video_dim)
        self.audio_projection = _input_projection(config.audio_dim, width)
        self.video_projection = _input_projection(config.video_dim, width)

        self.audio_with_video = self._encoder(config.cross_attn_dropout, add_positions=True)
        self.video_with_audio = self._encoder(config.cross_attn_dropout, add_positions=True)
        self.audio_fusion = self._encoder(config.attn_dropout, learnable_residual=True)
        self.video_fusion = self._encoder(config.attn_dropout, learnable_residual=True)
        self.fusion_head = ResidualHead(2 * width, (2 * width,), config.n_classes, config.out_dropout)

        self.audio_auxiliary = self._encoder(config.attn_dropout)
        self.video_auxiliary = self._encoder(config.attn_dropout)
        self.auxiliary_head = ResidualHead(width, config.aux_hidden_dims, config.n_classes, config.out_dropout)
        learned = config.missing_stand_in == "learned"
        # Unit-scale random vectors: any non-constant start keeps the norms' variance above zero.
        self.audio_missing = nn.Parameter(torch.randn(width)) if learned else None
        self.video_missing = nn.Parameter(torch.randn(width)) if learned else None

    def _encoder(self, attn_dropout: float, add_positions: bool = False, learnable_residual: bool = False):
        config = self.config
        return TransformerEncoder(
            config.width,
            config.num_heads,
            config.num_layers,
            attn_dropout=attn_dropout,
            relu_dropout=config.relu_dropout,
            res_dropout=config.res_dropout,
            embed_dropout=config.embed_dropout,
            causal=config.causal_mask,
            add_positions=add_positions,
            learnable_residual=learnable_residual,
        )

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> AuxFormer:
        """The model a checkpoint holds: ``{"model_config": config.to_dict(), "model_state": state_dict}``."""
        model = cls(AuxFormerConfig.from_dict(checkpoint["model_config"]))
        model.load_state_dict(checkpoint["model_state"])
        return model

    def set_input_statistics(self, audio_mean: torch.Tensor, audio_std: torch.Tensor, video_mean: torch.Tensor,
                             video_std: torch.Tensor) -> None:
        """Standardise inputs with these per-feature statistics; a std below 1e-6 counts as 1e-6."""
        for module, mean, std in ((self.audio_standardization, audio_mean, audio_std),
                                  (self.video_standardization, video_mean, video_std)):
            if mean.shape != module.mean.shape or std.shape != module.std.shape:
                raise ValueError(f"statistics of shape {tuple(mean.shape)} and {tuple(std.shape)} for "
                                 f"{tuple(module.mean.shape)} features")
            module.mean.copy_(mean)
            module.std.copy_(std.clamp(min=1e-6))

    def forward(
        self,
        audio: torch.Tensor,
        audio_lengths: torch.Tensor,
        video: torch.Tensor,
        video_lengths: torch.Tensor,
    ) -> AuxFormerOutputs:
        """audio (B, Ta, audio_dim), video (B, Tv, video_dim), right-padded; lengths (B,) in steps.

        A length of 0 marks a missing modality. Padding content is ignored.
        """
        audio, audio_lengths = self._prepare(audio, audio_lengths, self.config.audio_dim, self.audio_standardization,
                                             self.audio_projection, self.config.audio_pool, self.audio_missing)
        video, video_lengths = self._prepare(video, video_lengths, self.config.video_dim, self.video_standardization,
                                             self.video_projection, self.config.video_pool, self.video_missing)

        audio_attending_video = self.audio_with_video(audio, audio_lengths, video, video_lengths)
        video_attending_audio = self.video_with_audio(video, video_lengths, audio, audio_lengths)
        fused = torch.cat(
            [
                _last_valid_step(self.audio_fusion(audio_attending_video, audio_lengths), audio_lengths),
                _last_valid_step(self.video_fusion(video_attending_audio, video_lengths), video_lengths),
            ],
            dim=-1,
        )

        audio_alone = _last_valid_step(_repeat(self.audio_auxiliary, audio, audio_lengths), audio_lengths)
        video_alone = _last_valid_step(_repeat(self.video_auxiliary, video, video_lengths), video_lengths)
        return AuxFormerOutputs(
            main=self.fusion_head(fused),
            audio=self.auxiliary_head(audio_alone),
            visual=self.auxiliary_head(video_alone),
        )

    @staticmethod
    def _prepare(
        x: torch.Tensor,
        lengths: torch.Tensor,
        dim: int,
        standardization: Standardization,
        projection: nn.Conv1d | None,
        pool: int = 1,
        missing_stand_in: nn.Parameter | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked, standardised, padding zeroed, at least one step, pooled, projected: (B, T, width).

        A clip of length 0 has its first step set to ``missing_stand_in`` when there is one.
        """
        lengths = torch.as_tensor(lengths, device=x.device).long()
        if x.dim() != 3 or x.shape[2] != dim:
            raise ValueError(f"expected a (batch, steps, {dim}) input, got {tuple(x.shape)}")
        if lengths.shape != (x.shape[0],) or lengths.min() < 0 or lengths.max() > x.shape[1]:
            raise ValueError(f"lengths must be (batch,) = ({x.shape[0]},) in [0, {x.shape[1]}], got {lengths.tolist()}")
        if x.shape[1] == 0:
            x = x.new_zeros(x.shape[0], 1, dim)
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        x = standardization(x).masked_fill(~valid[..., None], 0.0)
        if pool > 1:
            x, lengths = _pool_steps(x, lengths, pool)
        if projection is not None:
            x = projection(x.transpose(1, 2)).transpose(1, 2)
        if missing_stand_in is not None:
            first_step_of_missing = (lengths == 0)[:, None, None] & (torch.arange(x.shape[1], device=x.device) == 0)[
                None, :, None]
            x = torch.where(first_step_of_missing, missing_stand_in.to(x.dtype), x)
        return x, lengths


def _input_projection(in_dim: int, width: int) -> nn.Conv1d | None:
    return nn.Conv1d(in_dim, width, kernel_size=1, bias=False) if in_dim != width else None


def _pool_steps(x: torch.Tensor, lengths: torch.Tensor, pool: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Means over consecutive windows of ``pool`` valid steps; x's padding must be zero.

    A clip's last window averages only the steps it has, so the result does not depend on padding.
    """
    batch, steps, dim = x.shape
    windows = -(-steps // pool)
    x = F.pad(x, (0, 0, 0, windows * pool - steps)).view(batch, windows, pool, dim).sum(dim=2)
    window_start = torch.arange(windows, device=x.device)[None, :] * pool
    counts = (lengths[:, None] - window_start).clamp(min=1, max=pool)
    return x / counts[..., None].to(x.dtype), -(-lengths // pool)


def _repeat(encoder: TransformerEncoder, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    for _ in range(AUXILIARY_PASSES):
        x = encoder(x, lengths)
    return x


def _last_valid_step(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, width) -> (B, width); a missing modality (length 0) reads its stand-in step."""
    last = lengths.clamp(min=1) - 1
    return x[torch.arange(x.shape[0], device=x.device), last]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
