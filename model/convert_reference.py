"""Convert a state dict saved by the reference AuxFormer implementation into a checkpoint of ours.

The stage ``python -m pipeline.convert_reference`` (``make convert-reference``) writes the result
as a run folder that evaluation and prediction read like any trained run.

IN.pt is what the reference saves (``torch.save(avmodel.state_dict(), ...)``, its
``final_head.pt``). Every reference key is mapped by an explicit table (MAPPING below); the
conversion fails, naming the keys, when a reference key is missing, unexpected or of the wrong
shape, or when a parameter of ours is left unfilled. Sizes are read from the weights; the number
of heads and the causal mask are not stored in them, so they come from the command line (the
reference's defaults: 10 heads, causal mask on). Dropouts take the reference's defaults.

The checkpoint holds ``{"model_config": config.to_dict(), "model_state": state_dict, "source":
"converted from reference", "source_sha256": sha256 of the input}``; ``AuxFormer.from_checkpoint``
rebuilds the model from it. On a batch without padding the converted model computes what the
reference computes (model/auxformer.py lists where the two differ otherwise).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from common.errors import ProjectError
from model.auxformer import AuxFormer, AuxFormerConfig

# Reference transformer name -> ours.
ENCODERS = {
    "trans_a_with_v": "audio_with_video",
    "trans_v_with_a": "video_with_audio",
    "trans_a_mem": "audio_fusion",
    "trans_v_mem": "video_fusion",
    "a_mem": "audio_auxiliary",
    "v_mem": "video_auxiliary",
}
ENCODERS_WITH_LEARNABLE_RESIDUAL = ("trans_a_mem", "trans_v_mem")

# Within each layer of a transformer. Several keys of ours: the reference tensor is split into
# equal parts along its first dimension (torch's MultiheadAttention packs query, key, value).
LAYER_MAPPING = {
    "self_attn.in_proj_weight": ("attention.query.weight", "attention.key.weight", "attention.value.weight"),
    "self_attn.in_proj_bias": ("attention.query.bias", "attention.key.bias", "attention.value.bias"),
    "self_attn.out_proj.weight": ("attention.output.weight",),
    "self_attn.out_proj.bias": ("attention.output.bias",),
    "layer_norms.0.weight": ("attention_norm.weight",),
    "layer_norms.0.bias": ("attention_norm.bias",),
    "layer_norms.1.weight": ("feed_forward_norm.weight",),
    "layer_norms.1.bias": ("feed_forward_norm.bias",),
    "fc1.weight": ("feed_forward_in.weight",),
    "fc1.bias": ("feed_forward_in.bias",),
    "fc2.weight": ("feed_forward_out.weight",),
    "fc2.bias": ("feed_forward_out.bias",),
}

# Per transformer, outside its layers. No key of ours: a buffer that holds no weights (a format
# version number, and a placeholder that only carries a dtype).
ENCODER_MAPPING = {
    "layer_norm.weight": ("final_norm.weight",),
    "layer_norm.bias": ("final_norm.bias",),
    "version": (),
    "embed_positions._float_tensor": (),
}

HEAD_MAPPING = {
    "proj1.weight": ("fusion_head.layers.0.weight",),
    "proj1.bias": ("fusion_head.layers.0.bias",),
    "proj2.weight": ("fusion_head.layers.1.weight",),
    "proj2.bias": ("fusion_head.layers.1.bias",),
    "out_layer.weight": ("fusion_head.classifier.weight",),
    "out_layer.bias": ("fusion_head.classifier.bias",),
    "proj_aux1.weight": ("auxiliary_head.layers.0.weight",),
    "proj_aux1.bias": ("auxiliary_head.layers.0.bias",),
    "proj_aux2.weight": ("auxiliary_head.layers.1.weight",),
    "proj_aux2.bias": ("auxiliary_head.layers.1.bias",),
    "proj_aux3.weight": ("auxiliary_head.layers.2.weight",),
    "proj_aux3.bias": ("auxiliary_head.layers.2.bias",),
    "out_layer_aux.weight": ("auxiliary_head.classifier.weight",),
    "out_layer_aux.bias": ("auxiliary_head.classifier.bias",),
}


class ConversionError(ProjectError):
    """The input is not a state dict of the reference model this converter knows."""


def mapping_table(config: AuxFormerConfig) -> dict[str, tuple[str, ...]]:
    """Every reference key of a model with ``config``'s sizes -> the keys of ours it fills."""
    # The reference always builds its audio convolution but skips it when the audio already has
    # the model width; it never projects video.
    table = {"conv_1d_a.weight": ("audio_projection.weight",) if config.audio_dim != config.width else ()}
    table.update(HEAD_MAPPING)
    for reference_encoder, encoder in ENCODERS.items():
        for key, ours in ENCODER_MAPPING.items():
            table[f"{reference_encoder}.{key}"] = tuple(f"{encoder}.{name}" for name in ours)
        layer_mapping = dict(LAYER_MAPPING)
        if reference_encoder in ENCODERS_WITH_LEARNABLE_RESIDUAL:
            layer_mapping["alpha"] = ("residual_weight",)
        for index in range(config.num_layers):
            for key, ours in layer_mapping.items():
                table[f"{reference_encoder}.layers.{index}.{key}"] = tuple(
                    f"{encoder}.layers.{index}.{name}" for name in ours
                )
    return table


def reference_config(state: dict[str, torch.Tensor], num_heads: int, causal_mask: bool) -> AuxFormerConfig:
    """Our config for the reference model whose weights are ``state`` (video is used at model width)."""
    width = _shape(state, "a_mem.layer_norm.weight")[0]
    num_layers = 0
    while f"a_mem.layers.{num_layers}.fc1.weight" in state:
        num_layers += 1
    return AuxFormerConfig(
        audio_dim=_shape(state, "conv_1d_a.weight")[1],
        video_dim=width,
        n_classes=_shape(state, "out_layer.weight")[0],
        width=width,
        num_heads=num_heads,
        num_layers=num_layers,
        aux_hidden_dims=(_shape(state, "proj_aux1.weight")[0], _shape(state, "proj_aux2.weight")[0]),
        causal_mask=causal_mask,
    )


def convert_state_dict(state: dict[str, torch.Tensor], config: AuxFormerConfig) -> dict[str, torch.Tensor]:
    """Our state dict, for ``config``, from the reference's; ConversionError names any mismatch."""
    table = mapping_table(config)
    missing = sorted(set(table) - set(state))
    unexpected = sorted(set(state) - set(table))
    if missing or unexpected:
        raise ConversionError(
            f"not a reference AuxFormer state dict for {config.num_layers} layers: "
            f"missing keys {missing or 'none'}; unexpected keys {unexpected or 'none'}"
        )

    expected = AuxFormer(config).state_dict()
    # The reference has no input standardisation; ours starts as the identity, the same function.
    identity = {key: value for key, value in expected.items() if "_standardization." in key}
    unfilled = sorted(set(expected) - set(identity) - {key for ours in table.values() for key in ours})
    if unfilled:
        raise ConversionError(f"parameters of ours left unfilled by the mapping: {unfilled}")
    wrong_shapes = [
        f"{reference_key} {tuple(state[reference_key].shape)}, expected {_joined_shape(expected, ours)}"
        for reference_key, ours in table.items()
        if ours and tuple(state[reference_key].shape) != _joined_shape(expected, ours)
    ]
    if wrong_shapes:
        raise ConversionError(f"reference tensors of the wrong shape: {'; '.join(wrong_shapes)}")

    converted = dict(identity)
    for reference_key, ours in table.items():
        parts = state[reference_key].chunk(len(ours), dim=0) if ours else ()
        converted.update((key, part.clone()) for key, part in zip(ours, parts))
    return converted


def _joined_shape(expected: dict[str, torch.Tensor], keys: tuple[str, ...]) -> tuple[int, ...]:
    """Shape of our tensors ``keys`` stacked along their first dimension, as the reference stores them."""
    first = expected[keys[0]].shape
    return (sum(expected[key].shape[0] for key in keys), *first[1:])


def convert_checkpoint(source: Path, num_heads: int, causal_mask: bool) -> dict:
    """Our checkpoint (model config and weights) of the reference's state dict in ``source``."""
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise ConversionError(f"{source} is not a loadable state dict: {error}") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ConversionError(f"{source} does not hold a state dict (a dict of tensors)")
    try:
        config = reference_config(state, num_heads, causal_mask)
    except ValueError as error:  # sizes no AuxFormerConfig accepts
        raise ConversionError(f"{source}: {error}") from None
    checkpoint = {
        "model_config": config.to_dict(),
        "model_state": convert_state_dict(state, config),
        "source": "converted from reference",
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    }
    AuxFormer.from_checkpoint(checkpoint)  # refuse what cannot be loaded back
    return checkpoint


def _shape(state: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise ConversionError(f"not a reference AuxFormer state dict: missing key {key}")
    return tuple(state[key].shape)
