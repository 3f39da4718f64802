"""The HSEmotion EfficientNet face encoders on randomly initialised timm models saved here, as a
state dict and as a whole pickled model (the form HSEmotion publishes, refused until converted):
sizes and the preprocessing the weights were trained with (batch invariance is the registry's
contract test's), and the errors for missing, wrong or code-carrying weights."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from extract.face_encoders import make_face_encoder
from extract.model_files import MODEL_DIR_VARIABLE, ModelFileError, sha256_of
from pipeline import convert_face_weights

timm = pytest.importorskip("timm")



@pytest.fixture(scope="module")
def b0_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enet") / "random_b0.pt"
    network = timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=8)
    torch.save(network.state_dict(), path)
    return path


def crops(count: int, size: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_b0_embeds_1280_features_from_the_hsemotion_input(b0_file):
    encoder = make_face_encoder("enet_b0", "cpu", b0_file)
    assert (encoder.input_size, encoder.embedding_dim) == (224, 1280)
    batch = crops(3)
    ours = encoder.embed(batch)
    # HSEmotion's preprocessing written out: RGB, 224x224, /255, ImageNet mean and deviation.
    network = timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=0)
    network.load_state_dict({k: v for k, v in torch.load(b0_file).items() if not k.startswith("classifier.")})
    rgb = torch.from_numpy(batch[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    resized = torch.nn.functional.interpolate(rgb, size=(224, 224), mode="bilinear", align_corners=False)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        theirs = network.eval()((resized - mean) / std).numpy()
    assert ours.shape == (3, 1280) and ours.dtype == np.float32
    # cv2's and torch's bilinear resampling round differently: close, not equal.
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()
    swapped = encoder.embed(batch[..., ::-1].copy())  # the same crop read as RGB: the channels matter
    assert np.abs(swapped - ours).max() > 0.05 * np.abs(ours).max()


class RunsCode:
    """Unpickling this makes a folder: the stand-in for a weights file that carries code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_whole_pickled_model_is_refused_until_converted_then_embeds_as_its_state(tmp_path, monkeypatch, capsys):
    torch.manual_seed(1)
    network = timm.create_model("tf_efficientnet_b2", pretrained=False, num_classes=8)
    torch.save(network, tmp_path / "enet_b2_8_best.pt")
    torch.save(network.state_dict(), tmp_path / "state.pt")
    with pytest.raises(ModelFileError, match="pickled objects.*never unpickles.*make convert-face-weights"):
        make_face_encoder("enet_b2", "cpu", tmp_path / "enet_b2_8_best.pt")
    monkeypatch.setenv(MODEL_DIR_VARIABLE, str(tmp_path / "models"))
    assert convert_face_weights.main(["--source", str(tmp_path / "enet_b2_8_best.pt")]) == 0
    converted = tmp_path / "models" / "enet_b2_8_best.pt"
    assert f"sha256 {sha256_of(converted)}" in capsys.readouterr().out
    whole = make_face_encoder("enet_b2", "cpu")  # the converted file, at the encoder's default place
    assert (whole.input_size, whole.embedding_dim) == (260, 1408)
    batch = crops(2, size=120)
    from_state = make_face_encoder("enet_b2", "cpu", tmp_path / "state.pt")
    np.testing.assert_array_equal(whole.embed(batch), from_state.embed(batch))


def test_a_weights_file_that_carries_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"conv_stem.weight": RunsCode(marker)}, tmp_path / "evil.pt")
    for name in ("enet_b0", "resnet18"):
        with pytest.raises(ModelFileError, match="evil.pt holds pickled objects"):
            make_face_encoder(name, "cpu", tmp_path / "evil.pt")
    assert not marker.exists()


def test_weights_other_than_those_the_features_were_made_with_are_never_opened(b0_file, tmp_path):
    marker = tmp_path / "code-ran"
    torch.save(RunsCode(marker), tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match=f"evil.pt has sha256 .* made with a file of sha256 {sha256_of(b0_file)}"):
        make_face_encoder("enet_b0", "cpu", tmp_path / "evil.pt", expected_sha256=sha256_of(b0_file))
    assert not marker.exists()
    make_face_encoder("enet_b0", "cpu", b0_file, expected_sha256=sha256_of(b0_file))


def test_weights_of_another_network_are_refused_naming_the_file(b0_file):
    with pytest.raises(ModelFileError, match=f"{b0_file} is not a tf_efficientnet_b2 \\(1408 features\\) state"):
        make_face_encoder("enet_b2", "cpu", b0_file)


def test_a_file_that_is_no_model_is_refused(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ModelFileError, match="notes.pt"):
        make_face_encoder("enet_b0", "cpu", tmp_path / "notes.pt")


def test_missing_default_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(ModelFileError, match=f"{tmp_path}/enet_b2_8_best.pt is missing .*HSE-asavchenko/"
                                             "face-emotion-recognition.*--face-weights PATH"):
        make_face_encoder("enet_b2", "cpu")
