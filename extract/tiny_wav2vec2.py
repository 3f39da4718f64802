"""Small wav2vec2 models of the real architecture with seeded random weights, saved as users save
theirs (save_pretrained): what the tests of the wav2vec2 encoder's plumbing load, and what make
bench times that plumbing with (no checkpoint is downloaded). Their features mean nothing."""
from __future__ import annotations

from pathlib import Path

TINY_WAV2VEC2 = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                     conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                     feat_extract_norm="layer", do_stable_layer_norm=True)


def tiny_wav2vec2_config(**changes):
    """A transformers.Wav2Vec2Config of TINY_WAV2VEC2 with ``changes``."""
    import transformers

    return transformers.Wav2Vec2Config(**{**TINY_WAV2VEC2, **changes})


def saved_wav2vec2(folder: Path, **changes):
    """A seeded tiny transformers.Wav2Vec2Model (``changes`` to its config), saved into ``folder``."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(tiny_wav2vec2_config(**changes)).eval()
    model.save_pretrained(folder)
    return model
