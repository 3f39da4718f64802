"""Small wav2vec2 models of the real architecture, built and saved here as users save theirs
(save_pretrained), for the tests of the wav2vec2 encoder's plumbing."""
from __future__ import annotations

from pathlib import Path

import torch
import transformers

TINY_WAV2VEC2 = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                     conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                     feat_extract_norm="layer", do_stable_layer_norm=True)


def tiny_wav2vec2_config(**changes) -> transformers.Wav2Vec2Config:
    return transformers.Wav2Vec2Config(**{**TINY_WAV2VEC2, **changes})


def saved_wav2vec2(folder: Path, **changes) -> transformers.Wav2Vec2Model:
    """A seeded tiny model (``changes`` to its config), saved into ``folder``."""
    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(tiny_wav2vec2_config(**changes)).eval()
    model.save_pretrained(folder)
    return model
