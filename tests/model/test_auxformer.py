"""AuxFormer and its attention blocks: shapes, padding invariance, missing modality, config, gradients, golden outputs.

The golden outputs (fixtures/golden_outputs.npz) were computed once by this module; after a
deliberate change of the model's arithmetic, rewrite them with
``PYTHONPATH=. .venv/bin/python tests/model/test_auxformer.py``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.attention import blocked_attention, sinusoidal_embedding, step_positions
from model.auxformer import AuxFormer, AuxFormerConfig

GOLDEN_FIXTURE = Path(__file__).parent / "fixtures" / "golden_outputs.npz"
SMALL = dict(audio_dim=24, video_dim=20, n_classes=4, width=20, num_heads=4, num_layers=2, aux_hidden_dims=(16, 12))

# Golden cases: the reference's sizes with its causal mask, and a small model with both inputs
# projected and the mask off. The batch mixes padding and a clip whose audio is missing.
GOLDEN_CASES = {
    "reference_sizes": AuxFormerConfig(),
    "small_no_mask": AuxFormerConfig(**SMALL, causal_mask=False),
}
GOLDEN_AUDIO_LENGTHS = [9, 5, 0]
GOLDEN_VIDEO_LENGTHS = [7, 7, 3]


def fill_deterministically(model: torch.nn.Module, seed: int) -> None:
    """Weights from a NumPy legacy stream (frozen across versions), by parameter name: no torch RNG involved."""
    rng = np.random.RandomState(seed)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            fan_in = parameter[0].numel() if parameter.dim() > 1 else 1
            values = rng.uniform(-1.0, 1.0, tuple(parameter.shape)) / math.sqrt(fan_in)
            parameter.copy_(torch.from_numpy(values))


def golden_outputs(name: str) -> dict[str, np.ndarray]:
    config = GOLDEN_CASES[name]
    model = AuxFormer(config).eval()
    fill_deterministically(model, seed=1)
    rng = np.random.RandomState(2)
    audio = torch.from_numpy(rng.standard_normal((3, max(GOLDEN_AUDIO_LENGTHS), config.audio_dim)).astype(np.float32))
    video = torch.from_numpy(rng.standard_normal((3, max(GOLDEN_VIDEO_LENGTHS), config.video_dim)).astype(np.float32))
    with torch.no_grad():
        outputs = model(audio, torch.tensor(GOLDEN_AUDIO_LENGTHS), video, torch.tensor(GOLDEN_VIDEO_LENGTHS))
    return {f"{name}.{head}": logits.numpy() for head, logits in outputs._asdict().items()}


def random_clip(config: AuxFormerConfig, audio_steps: int, video_steps: int, generator: torch.Generator):
    return (
        torch.randn(audio_steps, config.audio_dim, generator=generator),
        torch.randn(video_steps, config.video_dim, generator=generator),
    )


def batch_of(clips, extra_steps: int = 0, generator: torch.Generator | None = None):
    """Right-padded batch with random padding content (which the model must ignore)."""
    inputs = []
    for modality in (0, 1):
        sequences = [clip[modality] for clip in clips]
        steps = max(len(sequence) for sequence in sequences) + extra_steps
        padded = torch.randn(len(clips), steps, sequences[0].shape[1], generator=generator)
        for row, sequence in enumerate(sequences):
            padded[row, : len(sequence)] = sequence
        inputs += [padded, torch.tensor([len(sequence) for sequence in sequences])]
    return inputs


def test_a_learned_stand_in_gives_a_missing_modality_its_own_vector_and_old_configs_the_zero_one():
    assert AuxFormerConfig.from_dict({}).missing_stand_in == "zero"  # configs written before the option
    config = AuxFormerConfig(**SMALL, missing_stand_in="learned")
    torch.manual_seed(0)
    model = AuxFormer(config).eval()
    assert {"audio_missing", "video_missing"} <= set(model.state_dict())
    audio, video = torch.randn(2, 6, config.audio_dim), torch.randn(2, 4, config.video_dim)
    lengths = (torch.tensor([0, 6]), torch.tensor([4, 4]))
    other_audio = audio.clone()
    other_audio[0] = torch.randn(6, config.audio_dim)
    with torch.no_grad():
        learned = model(audio, lengths[0], video, lengths[1])
        other_content = model(other_audio, lengths[0], video, lengths[1])
        model.audio_missing.zero_()
        zeroed = model(audio, lengths[0], video, lengths[1])
    torch.testing.assert_close(learned, other_content)  # the missing clip's content is still ignored
    assert not torch.allclose(learned.audio[0], zeroed.audio[0])  # the stand-in is what it attends
    torch.testing.assert_close(learned.audio[1], zeroed.audio[1])  # a clip with audio is untouched
    with pytest.raises(ValueError, match="--missing-stand-in"):
        AuxFormerConfig(missing_stand_in="mean")


def test_outputs_are_three_logit_tensors_per_clip():
    model = AuxFormer(AuxFormerConfig()).eval()
    outputs = model(torch.randn(3, 12, 1024), torch.tensor([12, 4, 7]), torch.randn(3, 8, 50), torch.tensor([8, 8, 2]))
    assert outputs._fields == ("main", "audio", "visual")
    assert [tuple(logits.shape) for logits in outputs] == [(3, 6)] * 3


@pytest.mark.parametrize("causal_mask", [True, False])
@pytest.mark.parametrize("video_dim", [20, 9], ids=["video-at-width", "video-projected"])
@pytest.mark.parametrize("pools", [(1, 1), (4, 3)], ids=["unpooled", "pooled"])
def test_a_clip_gets_the_same_outputs_alone_and_batched_with_longer_clips(causal_mask, video_dim, pools):
    config = AuxFormerConfig(**dict(SMALL, video_dim=video_dim), causal_mask=causal_mask, audio_pool=pools[0],
                             video_pool=pools[1])
    model = AuxFormer(config).eval()
    generator = torch.Generator().manual_seed(0)
    # Clips shorter than others in audio, in video, in both; the last is the longest in both.
    lengths = [(5, 3), (11, 4), (6, 9), (1, 1), (13, 10)]
    clips = [random_clip(config, audio_steps, video_steps, generator) for audio_steps, video_steps in lengths]
    with torch.no_grad():
        batched = model(*batch_of(clips, extra_steps=2, generator=generator))
        for index, clip in enumerate(clips):
            alone = model(*batch_of([clip]))
            for head_alone, head_batched in zip(alone, batched):
                torch.testing.assert_close(head_alone[0], head_batched[index], rtol=0, atol=1e-5)


def test_audio_pooling_averages_windows_of_valid_steps():
    pool = AuxFormerConfig(**SMALL, audio_pool=4)
    plain = AuxFormerConfig(**SMALL)
    pooled_model, plain_model = AuxFormer(pool).eval(), AuxFormer(plain).eval()
    plain_model.load_state_dict(pooled_model.state_dict())
    generator = torch.Generator().manual_seed(3)
    audio, video = random_clip(pool, 10, 6, generator)
    # Windows of 4, 4 and the last 2 steps, averaged by hand, are what the unpooled model sees.
    by_hand = torch.stack([audio[0:4].mean(0), audio[4:8].mean(0), audio[8:10].mean(0)])
    with torch.no_grad():
        pooled = pooled_model(*batch_of([(audio, video)]))
        plain = plain_model(*batch_of([(by_hand, video)]))
    for head_pooled, head_plain in zip(pooled, plain):
        torch.testing.assert_close(head_pooled, head_plain, rtol=0, atol=1e-5)


def test_the_causal_mask_changes_the_outputs():
    generator = torch.Generator().manual_seed(3)
    masked = AuxFormer(AuxFormerConfig(**SMALL)).eval()
    unmasked = AuxFormer(AuxFormerConfig(**SMALL, causal_mask=False)).eval()
    unmasked.load_state_dict(masked.state_dict())
    inputs = batch_of([random_clip(masked.config, 8, 6, generator)])
    with torch.no_grad():
        assert not torch.allclose(masked(*inputs).main, unmasked(*inputs).main, atol=1e-4)


@pytest.mark.parametrize("missing", ["audio", "video"])
def test_a_missing_modality_gives_finite_outputs_and_gradients_whatever_its_content(missing):
    config = AuxFormerConfig(**SMALL)
    model = AuxFormer(config).eval()
    generator = torch.Generator().manual_seed(1)
    inputs = batch_of([random_clip(config, 7, 5, generator), random_clip(config, 4, 6, generator)], generator=generator)
    absent = 0 if missing == "audio" else 2  # index of the missing modality's tensor in inputs
    inputs[absent + 1][0] = 0

    def outputs_with(content: torch.Tensor, batch: slice = slice(None)):
        changed = [tensor[batch] for tensor in inputs]
        changed[absent] = content
        return model(*changed)

    zeroed_content = inputs[absent].clone()
    zeroed_content[0] = 0
    with torch.no_grad():
        given = outputs_with(inputs[absent])
        zeroed = outputs_with(zeroed_content)
        alone_without_steps = outputs_with(inputs[absent][:1, :0], batch=slice(0, 1))
    for head_given, head_zeroed, head_alone in zip(given, zeroed, alone_without_steps):
        assert torch.isfinite(head_given).all()
        torch.testing.assert_close(head_given, head_zeroed, rtol=0, atol=1e-5)
        torch.testing.assert_close(head_given[0], head_alone[0], rtol=0, atol=1e-5)

    model.train()
    sum(logits.sum() for logits in model(*inputs)).backward()
    assert all(torch.isfinite(parameter.grad).all() for parameter in model.parameters())


def test_a_whole_batch_without_audio_steps_runs():
    config = AuxFormerConfig(**SMALL)
    model = AuxFormer(config).eval()
    with torch.no_grad():
        outputs = model(
            torch.zeros(2, 0, config.audio_dim), torch.tensor([0, 0]),
            torch.randn(2, 5, config.video_dim), torch.tensor([5, 3]),
        )
    assert all(torch.isfinite(logits).all() and logits.shape == (2, 4) for logits in outputs)


def test_inputs_of_the_wrong_size_or_lengths_are_refused():
    config = AuxFormerConfig(**SMALL)
    model = AuxFormer(config)
    video, video_lengths = torch.randn(2, 5, config.video_dim), torch.tensor([5, 5])
    with pytest.raises(ValueError, match="expected a"):
        model(torch.randn(2, 5, config.audio_dim + 1), torch.tensor([5, 5]), video, video_lengths)
    with pytest.raises(ValueError, match="lengths"):
        model(torch.randn(2, 5, config.audio_dim), torch.tensor([6, 5]), video, video_lengths)


def test_every_parameter_gets_a_gradient_in_training():
    config = AuxFormerConfig(**SMALL)
    model = AuxFormer(config).train()
    generator = torch.Generator().manual_seed(2)
    clips = [random_clip(config, audio_steps, video_steps, generator) for audio_steps, video_steps in [(6, 4), (3, 8)]]
    labels = torch.tensor([0, 3])
    outputs = model(*batch_of(clips, generator=generator))
    sum(F.cross_entropy(logits, labels) for logits in outputs).backward()
    without_gradient = [
        name for name, parameter in model.named_parameters() if parameter.grad is None or not parameter.grad.any()
    ]
    assert without_gradient == []


def test_config_round_trips_through_json_and_checkpoints():
    config = AuxFormerConfig(**SMALL, causal_mask=False, embed_dropout=0.3)
    restored = AuxFormerConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert AuxFormerConfig.from_dict({}) == AuxFormerConfig()

    model = AuxFormer(config).eval()
    rebuilt = AuxFormer.from_checkpoint({"model_config": config.to_dict(), "model_state": model.state_dict()}).eval()
    generator = torch.Generator().manual_seed(4)
    inputs = batch_of([random_clip(config, 5, 4, generator)])
    with torch.no_grad():
        for original, copy in zip(model(*inputs), rebuilt(*inputs)):
            torch.testing.assert_close(original, copy, rtol=0, atol=0)


def test_config_refuses_unknown_fields_and_impossible_sizes():
    with pytest.raises(ValueError, match="unknown AuxFormerConfig fields: heads"):
        AuxFormerConfig.from_dict({"heads": 4})
    with pytest.raises(ValueError, match="divisible"):
        AuxFormerConfig(width=50, num_heads=4)
    with pytest.raises(ValueError, match="--out-dropout"):
        AuxFormerConfig(out_dropout=1.0)


def test_positions_number_valid_steps_from_one_and_embed_padding_as_zeros():
    positions = step_positions(torch.tensor([3, 0]), steps=4)
    assert positions.tolist() == [[1, 2, 3, 0], [0, 0, 0, 0]]
    embedding = sinusoidal_embedding(positions, dim=7)
    half = 3
    frequency = 10000 ** (-1 / (half - 1))  # channel k = 1
    assert embedding[0, 1, 1].item() == pytest.approx(math.sin(2 * frequency), abs=1e-6)
    assert embedding[0, 1, half + 1].item() == pytest.approx(math.cos(2 * frequency), abs=1e-6)
    assert embedding[0, :, -1].abs().sum() == 0  # odd width: trailing zero channel
    assert embedding[0, 3].abs().sum() == 0 and embedding[1].abs().sum() == 0


def test_attention_mask_blocks_padding_and_the_future_with_the_length_difference_as_lookahead():
    blocked = blocked_attention(torch.tensor([2, 3]), torch.tensor([3, 0]), query_steps=3, key_steps=4, causal=True)
    allowed = (~blocked).int().tolist()
    # Clip 0: 2 queries over 3 keys, lookahead |3 - 2| = 1; its padded query row sees every valid key.
    assert allowed[0] == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]
    # Clip 1: keys missing (length 0) -> only the zero stand-in step, seen by every query.
    assert allowed[1] == [[1, 0, 0, 0]] * 3
    unmasked = blocked_attention(torch.tensor([2]), torch.tensor([3]), query_steps=2, key_steps=4, causal=False)
    assert (~unmasked).int().tolist() == [[[1, 1, 1, 0]] * 2]


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_outputs_match_the_golden_fixture(name):
    expected = np.load(GOLDEN_FIXTURE)
    for key, actual in golden_outputs(name).items():
        np.testing.assert_allclose(actual, expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


if __name__ == "__main__":
    outputs = {key: value for name in sorted(GOLDEN_CASES) for key, value in golden_outputs(name).items()}
    np.savez(GOLDEN_FIXTURE, **outputs)
    print(f"wrote {GOLDEN_FIXTURE}: {', '.join(sorted(outputs))}")
