"""The prediction stage on real demo videos and a real run folder: the same features as the
extraction the run was trained on, a missing modality predicted from the other, a broken file
that costs only its own row, and clear errors when there is no run to predict with."""
from __future__ import annotations

import csv
import errno
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch

from common.config import config_values, from_values
from corpora.crema_d import CLASSES
from corpora.demo.media import write_flv
from extract.engine import FeaturesConfig, extract
from extract.shards import FeatureStore
from extract.spec import ExtractionRecord
from model.auxformer import AuxFormer, AuxFormerConfig
from model.data import model_inputs
from model.variants import VARIANTS, head_logits
from pipeline.predict import main
from training.run_folder import BEST_CHECKPOINT, RunFolder, RunRecord, environment
from training.stage import TrainStageConfig

CLIP = "1001_IEO_ANG_HI"


pytestmark = pytest.mark.usefixtures("face_model")


@pytest.fixture(scope="module")
def clips(demo_corpus, tmp_path_factory) -> Path:
    """Two demo videos in a plain folder: extracted as the "folder" dataset, their audio comes from
    the video's own track, as prediction takes it (the demo dataset takes the WAV beside it)."""
    folder = tmp_path_factory.mktemp("clips")
    for clip_id in (CLIP, "1002_IEO_SAD_HI"):
        shutil.copy(demo_corpus / "VideoFlash" / f"{clip_id}.flv", folder)
    return folder


@pytest.fixture(scope="module")
def extraction(clips, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("extraction")
    folder, report = extract(FeaturesConfig(dataset="folder", corpus_dir=str(clips), out_root=out / "features",
                                            workers=2, device="cpu"))
    assert report.clips == 2 and not report.failures
    return folder


@pytest.fixture(scope="module")
def trained(extraction, tmp_path_factory) -> tuple[Path, AuxFormer]:
    """A run folder written through training.run_folder, as make train writes it, for a small untrained AuxFormer."""
    torch.manual_seed(0)
    config = AuxFormerConfig(audio_dim=80, video_dim=135, n_classes=6, width=8, num_heads=2, num_layers=1,
                             aux_hidden_dims=(16,), audio_pool=4)
    model = AuxFormer(config)
    with FeatureStore(extraction) as store:
        features = store.load(CLIP)
    # The clip's own statistics (+1 keeps constant features finite), so that standardisation matters.
    mel, embedding = torch.from_numpy(features.audio), torch.from_numpy(features.embedding)
    model.set_input_statistics(mel.mean(0), mel.std(0) + 1, embedding.mean(0), embedding.std(0) + 1)
    run = RunFolder(tmp_path_factory.mktemp("runs") / "demo" / "p1" / "auxformer")
    stage = from_values(TrainStageConfig, {"width": 8, "num_heads": 2, "num_layers": 1})
    record = RunRecord(stage=config_values(stage), model=config.to_dict(), variant="auxformer", classes=list(CLASSES),
                       data={"dataset": "demo", "features": str(extraction)}, environment=environment("cpu"))
    run.write_record(record, ExtractionRecord.load(extraction))
    run.save_checkpoint({"model_config": config.to_dict(), "model_state": model.state_dict(), "classes": list(CLASSES),
                         "epoch": 1}, BEST_CHECKPOINT)
    return run.path, model.eval()


def predict(video: Path, run_dir: Path, out_dir: Path) -> tuple[int, dict]:
    code = main(["--video", str(video), "--run-dir", str(run_dir), "--out-dir", str(out_dir), "--device", "cpu"])
    name = video.stem if video.is_file() else video.name
    return code, json.loads((out_dir / f"{name}.json").read_text())


def test_a_video_is_predicted_from_both_modalities_with_the_features_training_read(trained, clips, extraction,
                                                                                     tmp_path, capsys):
    run_dir, model = trained
    code, record = predict(clips / f"{CLIP}.flv", run_dir, tmp_path)
    assert code == 0
    (row,) = record["predictions"]
    assert row["file"] == f"{CLIP}.flv" and row["modalities"] == "audio+video" and not row["error"]
    probabilities = np.array([row["probabilities"][name] for name in CLASSES])
    assert probabilities.sum() == pytest.approx(1, abs=1e-6)
    assert row["emotion"] == CLASSES[int(probabilities.argmax())]

    store = FeatureStore(extraction)
    audio, video = model_inputs(store.load(CLIP))
    store.close()
    with torch.inference_mode():
        outputs = model(audio[None], torch.tensor([len(audio)]), video[None], torch.tensor([len(video)]))
    logits = head_logits(*outputs, True, True)[VARIANTS["auxformer"].predicting_head]
    np.testing.assert_allclose(probabilities, torch.softmax(logits[0], dim=0).numpy(), atol=1e-5)
    assert record["checkpoint_epoch"] == 1
    assert record["predict_config"]["video"] == str(clips / f"{CLIP}.flv")
    assert row["face_share"] > 0.9 and 0.5 < row["face_score"] <= 1.0
    assert row["audio_seconds"] == pytest.approx(row["video_seconds"], abs=0.2) and row["video_seconds"] > 1
    out = capsys.readouterr()
    assert f"{CLIP}.flv" in out.out
    # The run says it was trained on the demo corpus: the notice comes once.
    assert out.err.count("synthetic demo corpus") == 1 and record["trained_on"] == "demo"


def _remux_without_audio(source_path: Path, path: Path) -> None:
    with av.open(str(source_path)) as source, av.open(str(path), "w", format="flv") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)


def test_a_video_without_audio_track_is_predicted_from_the_video(trained, clips, tmp_path):
    silent = tmp_path / "silent.flv"
    _remux_without_audio(clips / f"{CLIP}.flv", silent)
    code, record = predict(silent, trained[0], tmp_path)
    (row,) = record["predictions"]
    assert code == 0 and row["modalities"] == "video" and row["emotion"] in CLASSES
    assert "no audio track" in row["note"]


def test_a_video_without_a_face_is_predicted_from_the_audio(trained, demo_corpus, tmp_path):
    samples, _ = soundfile.read(demo_corpus / "AudioWAV" / f"{CLIP}.wav", dtype="float32")
    grey = np.full((540, 480), 128, np.uint8)  # a 480x360 I420 frame
    faceless = tmp_path / "faceless.flv"
    write_flv(faceless, [grey] * 60, samples[:32000])  # 2 s at 30 fps, 2 s of 16 kHz speech
    code, record = predict(faceless, trained[0], tmp_path)
    (row,) = record["predictions"]
    assert code == 0 and row["modalities"] == "audio" and row["emotion"] in CLASSES
    assert "no face found" in row["note"] and row["face_share"] == 0.0 and row["face_score"] == 0.0


def test_an_undecodable_file_fails_alone(trained, clips, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(clips / f"{CLIP}.flv", folder)
    (folder / "broken.flv").write_text("this is not a video\n" * 50)
    code, record = predict(folder, trained[0], tmp_path)
    assert code == 1
    good, broken = record["predictions"]  # in name order
    assert good["file"] == f"{CLIP}.flv" and good["modalities"] == "audio+video" and not good["error"]
    assert broken["file"] == "broken.flv" and not broken["emotion"] and "broken.flv" in broken["error"]
    with open(tmp_path / "mixed.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == [f"{CLIP}.flv", "broken.flv"]
    assert {f"p_{name}" for name in CLASSES} <= set(rows[0]) and rows[0]["emotion"] == good["emotion"]
    assert rows[1]["error"] == broken["error"]
    out = capsys.readouterr().out
    assert "broken.flv" in out and "error" in out


def test_a_missing_run_says_to_train_it(clips, tmp_path, capsys):
    code = main(["--video", str(clips / f"{CLIP}.flv"), "--run-dir", str(tmp_path / "no-run"), "--device", "cpu"])
    assert code == 2 and "make train" in capsys.readouterr().err


def test_a_copied_run_folder_predicts_alone_with_the_same_probabilities(trained, clips, extraction, tmp_path):
    _, original = predict(clips / f"{CLIP}.flv", trained[0], tmp_path / "original")
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(trained[0], copy)
    moved = extraction.with_name(extraction.name + "-moved")
    extraction.rename(moved)
    try:
        code, record = predict(clips / f"{CLIP}.flv", copy, tmp_path / "copied")
    finally:
        moved.rename(extraction)
    assert code == 0
    assert record["predictions"][0]["probabilities"] == original["predictions"][0]["probabilities"]


def test_a_run_folder_without_its_extraction_spec_says_so(trained, clips, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    (run_dir / "extraction.yaml").unlink()
    code = main(["--video", str(clips / f"{CLIP}.flv"), "--run-dir", str(run_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "extraction.yaml" in err and str(run_dir) in err


def test_links_that_leave_the_folder_are_skipped_unless_asked(trained, clips, tmp_path, capsys):
    folder = tmp_path / "linked"
    folder.mkdir()
    shutil.copy(clips / f"{CLIP}.flv", folder)
    outside = tmp_path / "private.txt"
    outside.write_text("not for prediction\n")
    (folder / "secret.mp4").symlink_to(outside)
    code, record = predict(folder, trained[0], tmp_path)
    assert code == 0 and [row["file"] for row in record["predictions"]] == [f"{CLIP}.flv"]
    assert "secret.mp4" in capsys.readouterr().err


def test_a_video_stored_turned_is_predicted_upright_and_says_so(trained, turned_clips, tmp_path):
    folder = tmp_path / "phone"
    folder.mkdir()
    for rotation in (0, 90):
        shutil.copy(turned_clips[rotation], folder)
    code, record = predict(folder, trained[0], tmp_path)
    assert code == 0
    upright, turned = record["predictions"]  # in name order: rotation0.mp4, rotation90.mp4
    assert (upright["rotation"], turned["rotation"]) == (0, 90)
    assert turned["face_share"] == upright["face_share"] > 0.9 and turned["modalities"] == "video"
    assert turned["probabilities"] == pytest.approx(upright["probabilities"], abs=1e-4)
    with open(tmp_path / "phone.csv", newline="") as f:
        assert [row["rotation"] for row in csv.DictReader(f)] == ["0", "90"]


def test_an_output_folder_that_cannot_be_written_is_found_before_predicting(trained, clips, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["--video", str(clips / f"{CLIP}.flv"), "--run-dir", str(trained[0]), "--out-dir",
                 str(blocker / "predictions"), "--device", "cpu"])
    assert code == 2
    error = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("predict: note:")]
    assert len(error) == 1 and "cannot write there" in error[0] and "--out-dir" in error[0]


def test_a_full_disk_while_writing_predictions_is_one_line(trained, clips, tmp_path, monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    code = main(["--video", str(clips / f"{CLIP}.flv"), "--run-dir", str(trained[0]), "--out-dir",
                 str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2
    error = [line for line in capsys.readouterr().err.strip().splitlines()
             if "%|" not in line and not line.startswith("predict: note:")]
    assert len(error) == 1 and "no space left" in error[0]
    assert not list((tmp_path / "out").glob("*.partial"))
