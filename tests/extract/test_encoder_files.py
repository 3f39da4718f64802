"""make models' encoder table, derived from the registries: every encoder, whether its weights are
here, their sha256, where they go."""
from __future__ import annotations

import hashlib

import huggingface_hub

from extract import encoder_files
from extract.audio_encoders import AUDIO_ENCODERS
from extract.audio_encoders.wav2vec2 import Wav2Vec2Encoder
from extract.face_encoders import FACE_ENCODERS
from extract.model_files import MODEL_DIR_VARIABLE


def test_every_encoder_is_listed_with_presence_hash_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    (tmp_path / "enet_b2_8_best.pt").write_bytes(b"weights")
    rows = {row.encoder: row for row in encoder_files.encoder_files()}
    assert set(rows) == set(FACE_ENCODERS) | set(AUDIO_ENCODERS)
    assert {"fer", "resnet18", "enet_b0", "enet_b2", "logmel", "egemaps", "compare", "wav2vec2"} <= set(rows)
    assert rows["enet_b2"].present and rows["enet_b2"].sha256 == hashlib.sha256(b"weights").hexdigest()
    assert not rows["enet_b0"].present and rows["enet_b0"].location == str(tmp_path / "enet_b0_8_best_afew.pt")
    assert "HSE-asavchenko/face-emotion-recognition" in rows["enet_b0"].how
    assert not rows["wav2vec2"].present and "hf download facebook/wav2vec2-large-robust" in \
        rows["wav2vec2"].how
    text = encoder_files.table(list(rows.values()))
    assert f"enet_b2   face  present  {tmp_path / 'enet_b2_8_best.pt'}  sha256 {rows['enet_b2'].sha256}" in text


def test_a_checkpoint_in_the_hugging_face_cache_is_found_with_its_hash(tmp_path, monkeypatch):
    snapshot = tmp_path / "hf" / "models--someone--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"tensors")
    (snapshot / "config.json").write_text("{}")
    refs = tmp_path / "hf" / "models--someone--tiny" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    [row] = Wav2Vec2Encoder.weights_files("someone/tiny")
    assert row.present and row.sha256 == hashlib.sha256(b"tensors").hexdigest()
