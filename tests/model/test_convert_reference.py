"""The reference-checkpoint converter: its mapping table, the checkpoint it writes, and what it refuses.

fixtures/reference_state_shapes.json lists every key of the reference implementation's state
dict, with its shape, for the reference's default arguments (net/avmodel_AF.py, train.py).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from model.auxformer import AuxFormer, AuxFormerConfig
from model.convert_reference import mapping_table
from pipeline.convert_reference import main
from training.run_folder import CHECKSUM_KEY, RunFolder, checkpoint_checksum

REFERENCE_SHAPES = json.loads((Path(__file__).parent / "fixtures" / "reference_state_shapes.json").read_text())
REFERENCE_CONFIG = AuxFormerConfig()  # the reference's sizes: audio 1024, video and width 50, 5 layers, 6 classes


def random_reference_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) for key, shape in REFERENCE_SHAPES.items()}


def reference_state_from(model: AuxFormer) -> dict[str, torch.Tensor]:
    """Our model's weights laid out as the reference saves them (the table read backwards)."""
    ours = model.state_dict()
    state = random_reference_state()  # supplies the reference's weightless buffers
    for reference_key, our_keys in mapping_table(model.config).items():
        if our_keys:
            state[reference_key] = torch.cat([ours[key] for key in our_keys])
    return state


CLASSES = "ANG,DIS,FEA,HAP,NEU,SAD"


def convert(tmp_path: Path, state: dict[str, torch.Tensor], *options: str) -> tuple[int, Path, Path]:
    """Run the converter stage; returns its exit status, the source and the run folder's best.pt."""
    source, run_dir = tmp_path / "final_head.pt", tmp_path / "converted"
    torch.save(state, source)
    status = main(["--source", str(source), "--out-dir", str(run_dir), "--classes", CLASSES, *options])
    return status, source, run_dir / "best.pt"


def test_the_table_uses_every_reference_key_once_and_fills_every_weight_once():
    table = mapping_table(REFERENCE_CONFIG)
    assert sorted(table) == sorted(REFERENCE_SHAPES)
    filled = [key for our_keys in table.values() for key in our_keys]
    # The input standardisation is ours alone; the converter leaves it the identity (tested below).
    weights = [key for key in AuxFormer(REFERENCE_CONFIG).state_dict() if "_standardization." not in key]
    assert sorted(filled) == sorted(weights)
    assert len(filled) == len(set(filled))


def test_a_reference_state_dict_converts_into_a_loadable_checkpoint(tmp_path, capsys):
    reference_state = random_reference_state()
    status, source, target = convert(tmp_path, reference_state)
    assert status == 0, capsys.readouterr().err

    checkpoint = torch.load(target, weights_only=True)
    assert checkpoint["source"] == "converted from reference"
    assert checkpoint["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert AuxFormerConfig.from_dict(checkpoint["model_config"]) == REFERENCE_CONFIG
    state = AuxFormer.from_checkpoint(checkpoint).state_dict()

    in_projection = reference_state["trans_a_with_v.layers.2.self_attn.in_proj_weight"]
    assert torch.equal(state["audio_with_video.layers.2.attention.query.weight"], in_projection[:50])
    assert torch.equal(state["audio_with_video.layers.2.attention.key.weight"], in_projection[50:100])
    assert torch.equal(state["audio_with_video.layers.2.attention.value.weight"], in_projection[100:])
    assert torch.equal(state["video_fusion.layers.4.residual_weight"], reference_state["trans_v_mem.layers.4.alpha"])
    assert torch.equal(state["audio_projection.weight"], reference_state["conv_1d_a.weight"])
    assert torch.equal(state["auxiliary_head.layers.2.weight"], reference_state["proj_aux3.weight"])
    assert torch.equal(state["audio_standardization.mean"], torch.zeros(1024))
    assert torch.equal(state["video_standardization.std"], torch.ones(50))


def test_the_converted_checkpoint_carries_its_checksum(tmp_path, capsys):
    status, _, target = convert(tmp_path, random_reference_state())
    assert status == 0
    checkpoint = RunFolder(target.parent).load_checkpoint()
    assert checkpoint[CHECKSUM_KEY] == checkpoint_checksum(checkpoint)
    assert "warning" not in capsys.readouterr().err


def test_our_weights_survive_a_round_trip_through_the_reference_layout(tmp_path):
    torch.manual_seed(0)
    model = AuxFormer(REFERENCE_CONFIG).eval()
    status, _, target = convert(tmp_path, reference_state_from(model))
    assert status == 0
    converted = AuxFormer.from_checkpoint(torch.load(target, weights_only=True)).eval()
    for key, tensor in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], tensor), key

    inputs = (torch.randn(2, 9, 1024), torch.tensor([9, 6]), torch.randn(2, 7, 50), torch.tensor([7, 7]))
    with torch.no_grad():
        for original, copy in zip(model(*inputs), converted(*inputs)):
            assert torch.equal(original, copy)


def test_settings_not_stored_in_the_weights_come_from_the_command_line(tmp_path):
    status, _, target = convert(tmp_path, random_reference_state(), "--num-heads", "5", "--no-causal-mask")
    assert status == 0
    config = AuxFormerConfig.from_dict(torch.load(target, weights_only=True)["model_config"])
    assert (config.num_heads, config.causal_mask) == (5, False)


@pytest.mark.parametrize(
    ("change", "named_in_error"),
    [
        (lambda state: state.pop("v_mem.layers.3.fc2.bias"), "v_mem.layers.3.fc2.bias"),
        (lambda state: state.pop("trans_a_mem.layers.0.alpha"), "trans_a_mem.layers.0.alpha"),
        (lambda state: state.update({"conv_1d_v.weight": torch.zeros(50, 50, 1)}), "conv_1d_v.weight"),
        (lambda state: state.update({"a_mem.layers.1.fc1.weight": torch.zeros(100, 50)}), "a_mem.layers.1.fc1.weight"),
    ],
    ids=["missing", "missing-residual-weight", "unexpected", "wrong-shape"],
)
def test_a_state_dict_that_does_not_match_is_refused_with_the_keys_named(tmp_path, capsys, change, named_in_error):
    state = random_reference_state()
    change(state)
    status, _, target = convert(tmp_path, state)
    assert status == 2
    assert named_in_error in capsys.readouterr().err
    assert not target.exists()


def test_a_file_that_is_no_state_dict_is_refused(tmp_path, capsys):
    source = tmp_path / "notes.pt"
    source.write_text("not a checkpoint")
    assert main(["--source", str(source), "--out-dir", str(tmp_path / "out"), "--classes", CLASSES]) == 2
    assert "not a loadable state dict" in capsys.readouterr().err
