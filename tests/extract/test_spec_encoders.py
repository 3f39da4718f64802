"""The extraction spec's encoder options, derived from the registries: folder names, validation,
the command line, and records of older versions."""
from __future__ import annotations

import pytest
import yaml

from common.config import from_values, parse_config
from common.errors import ProjectError
from extract.spec import EXTRACTION_FILE, ExtractionRecord, ExtractionSpec


def spec(**options) -> ExtractionSpec:
    """A spec from options by their command-line names, as make features takes them."""
    return from_values(ExtractionSpec, options)


@pytest.mark.parametrize("options, prefix", [
    ({}, "fer-mediapipe-cascade-r4-k4-mel80-"),
    ({"audio_encoder": "egemaps", "face_encoder": "enet_b2"}, "enet_b2-mediapipe-cascade-r4-k4-egemaps-"),
    ({"audio_encoder": "wav2vec2", "audio_layer": 12}, "fer-mediapipe-cascade-r4-k4-wav2vec2L12-"),
    ({"audio_encoder": "compare"}, "fer-mediapipe-cascade-r4-k4-compare-"),
    ({"video_features_from": "frames", "video_rate": 30.0}, "imported-mel80-"),
])
def test_the_folder_is_named_from_the_encoders(options, prefix):
    assert spec(**options).folder_name().startswith(prefix)


def test_weights_paths_do_not_change_the_folder_but_options_do():
    base = spec(audio_encoder="wav2vec2")
    assert spec(audio_encoder="wav2vec2", audio_weights="elsewhere").folder_name() == base.folder_name()
    assert spec(audio_encoder="wav2vec2", audio_layer=6).folder_name() != base.folder_name()


def test_only_the_chosen_encoders_options_name_the_folder():
    assert spec(audio_layer=6, n_mels=80).folder_name() == spec().folder_name()  # wav2vec2's option, log-mel chosen
    assert spec(n_mels=40).folder_name() != spec().folder_name()
    assert spec(audio_encoder="egemaps", n_mels=40).folder_name() == spec(audio_encoder="egemaps").folder_name()


def test_every_registered_members_options_are_options_of_the_command_line():
    parsed = parse_config(ExtractionSpec, ["--audio-encoder", "wav2vec2", "--audio-layer", "3", "--n-mels", "40",
                                           "--min-face-score", "0.7", "--face-rate", "5"])
    assert (parsed.wav2vec2.audio_layer, parsed.logmel.n_mels, parsed.mediapipe.min_face_score) == (3, 40, 0.7)
    assert parsed.options_of("audio_encoder") is parsed.wav2vec2 and parsed.face_rate == 5


def test_the_folder_name_does_not_depend_on_what_the_process_imported():
    """Importing opensmile (through audobject, oyaml) made yaml ignore sort_keys, and with it a run
    after an eGeMAPS extraction looked for the default features under another name."""
    before = ExtractionSpec().folder_name()
    import oyaml  # noqa: F401  (what opensmile imports)

    assert yaml.safe_dump({"b": 1, "a": 2}, sort_keys=True) == "b: 1\na: 2\n"  # the order it imposes
    assert ExtractionSpec().folder_name() == before == "fer-mediapipe-cascade-r4-k4-mel80-8351ad49"


@pytest.mark.parametrize("options, message", [
    ({"audio_encoder": "mfcc"}, "unknown audio encoder 'mfcc'; choose one of .*logmel.*wav2vec2"),
    ({"face_encoder": "vgg"}, "unknown face encoder 'vgg'"),
    ({"detector": "yolo"}, "unknown face detector 'yolo'; choose one of mediapipe, haar"),
    ({"audio_norm": "global"}, "--audio-norm must be one of utterance, fixed, none"),
    ({"audio_layer": 0}, "--audio-layer must be at least 1"),
    ({"video_features_from": "frames"}, "--video-features-from and --video-rate"),
    ({"n_mels": 100_000}, "--n-mels must be within 1..201"),
    ({"crop_margin": float("nan")}, "--crop-margin must be within 0..2"),
    ({"face_rate": float("inf")}, "--face-rate must be within 0..1000"),
    ({"min_face_score": float("nan")}, "--min-face-score must be within 0..1"),
])
def test_options_out_of_range_are_refused(options, message):
    with pytest.raises(ProjectError, match=message):
        spec(**options)


def test_a_record_written_with_the_old_option_names_reads_as_the_encoder_it_was(tmp_path):
    ExtractionRecord(spec(face_encoder="resnet18", face_weights="r18.pth"), {}).save(tmp_path)
    text = (tmp_path / EXTRACTION_FILE).read_text()
    values = yaml.safe_load(text)
    values["spec"]["encoder"] = values["spec"].pop("face_encoder")
    values["spec"]["encoder_weights"] = values["spec"].pop("face_weights")
    values["models"] = {"encoder_sha256": "abc", "face_detector_sha256": "", "crop_size": 224, "embedding_dim": 512}
    (tmp_path / EXTRACTION_FILE).write_text(yaml.safe_dump(values))
    record = ExtractionRecord.load(tmp_path)
    assert (record.spec.face_encoder, record.spec.face_weights, record.spec.audio_encoder) == ("resnet18", "r18.pth",
                                                                                               "logmel")
    # Its audio was the log-mel's, so it compares equal to a log-mel record of today.
    assert (record.models["audio_sha256"], record.models["audio_dim"], record.models["audio_rate"]) == ("", 80, 100.0)


def test_a_record_of_options_by_name_from_before_the_registries_reads_into_their_parts(tmp_path):
    flat = {"face_encoder": "fer", "detector": "mediapipe", "min_face_score": 0.6, "n_mels": 64, "audio_layer": 7}
    (tmp_path / EXTRACTION_FILE).write_text(yaml.safe_dump({"spec": flat, "models": {"audio_dim": 64}}))
    record = ExtractionRecord.load(tmp_path)
    assert (record.spec.mediapipe.min_face_score, record.spec.logmel.n_mels, record.spec.wav2vec2.audio_layer) == \
        (0.6, 64, 7)
