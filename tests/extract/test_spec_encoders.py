"""The extraction spec's encoder options: folder names, validation, and records of older versions."""
from __future__ import annotations

import pytest
import yaml

from extract.shards import FeatureError
from extract.spec import EXTRACTION_FILE, ExtractionRecord, ExtractionSpec


@pytest.mark.parametrize("options, prefix", [
    ({}, "fer-mediapipe-r4-k4-mel80-"),
    ({"audio_encoder": "egemaps", "face_encoder": "enet_b2"}, "enet_b2-mediapipe-r4-k4-egemaps-"),
    ({"audio_encoder": "wav2vec2", "audio_layer": 12}, "fer-mediapipe-r4-k4-wav2vec2L12-"),
    ({"video_features_from": "frames", "video_rate": 30.0}, "imported-mel80-"),
])
def test_the_folder_is_named_from_the_encoders(options, prefix):
    assert ExtractionSpec(**options).folder_name().startswith(prefix)


def test_weights_paths_do_not_change_the_folder_but_options_do():
    base = ExtractionSpec(audio_encoder="wav2vec2")
    assert ExtractionSpec(audio_encoder="wav2vec2", audio_weights="elsewhere").folder_name() == base.folder_name()
    assert ExtractionSpec(audio_encoder="wav2vec2", audio_layer=6).folder_name() != base.folder_name()


def test_the_folder_name_does_not_depend_on_what_the_process_imported():
    """Importing opensmile (through audobject, oyaml) made yaml ignore sort_keys, and with it a run
    after an eGeMAPS extraction looked for the default features under another name."""
    before = ExtractionSpec().folder_name()
    import oyaml  # noqa: F401  (what opensmile imports)

    assert yaml.safe_dump({"b": 1, "a": 2}, sort_keys=True) == "b: 1\na: 2\n"  # the order it imposes
    assert ExtractionSpec().folder_name() == before == "fer-mediapipe-r4-k4-mel80-5f97522d"


@pytest.mark.parametrize("options, message", [
    ({"audio_encoder": "mfcc"}, "unknown audio encoder 'mfcc'; choose one of logmel, egemaps, wav2vec2"),
    ({"face_encoder": "vgg"}, "unknown face encoder 'vgg'"),
    ({"audio_norm": "global"}, "--audio-norm must be one of utterance, fixed, none"),
    ({"audio_layer": 0}, "--audio-layer must be at least 1"),
    ({"video_features_from": "frames"}, "--video-features-from and --video-rate"),
])
def test_options_out_of_range_are_refused(options, message):
    with pytest.raises(FeatureError, match=message):
        ExtractionSpec(**options)


def test_a_record_written_with_the_old_option_names_reads_as_the_encoder_it_was(tmp_path):
    ExtractionRecord(ExtractionSpec(face_encoder="resnet18", face_weights="r18.pth"), {}).save(tmp_path)
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
