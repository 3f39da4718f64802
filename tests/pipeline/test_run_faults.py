"""Fault injection on run folders and the stages that read and write them, one test per finding of an
audit of run folders. Each asserts the exit status, the one line on stderr and that nothing already
written is lost.

The setup is the training tests' (tests/model/training_fixture.py): a 4-actor manifest and HDF5
shards of synthetic features; runs are a tiny model trained for 1 epoch. Every path given to a stage
is absolute, so a test may run from any folder.
"""
from __future__ import annotations

import errno
import json
import shlex
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

import pipeline.crossval as crossval_stage
import pipeline.evaluate as evaluate_stage
import pipeline.predict as predict_stage
import pipeline.train as train_stage
from common.locks import exclusive_lock
from extract.engine import write_failures
from tests.model.training_fixture import TINY_STAGE_ARGS, Setup, write_features

ROOT = Path(__file__).resolve().parents[2]
RUN = Path("demo/p1/auxformer")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("run-faults"))


def paths(setup: Setup) -> list[str]:
    return ["--corpus-dir", str(setup.corpus), "--features-dir", str(setup.features),
            "--manifests-dir", str(setup.workspace / "data" / "manifests")]


def train_args(setup: Setup, runs_root: Path, *extra: str) -> list[str]:
    return [*TINY_STAGE_ARGS, *paths(setup), "--runs-root", str(runs_root), "--epochs", "1", *extra]


@pytest.fixture(scope="module")
def pristine(setup, tmp_path_factory) -> Path:
    """A trained and evaluated run, copied by the tests that damage it."""
    runs_root = tmp_path_factory.mktemp("pristine")
    assert train_stage.main(train_args(setup, runs_root)) == 0
    assert evaluate_stage.main(["--run-dir", str(runs_root / RUN)]) == 0
    return runs_root / RUN


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    copy = tmp_path / "runs" / RUN
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def own_run(setup, tmp_path) -> Path:
    """A run trained in this test's runs folder, for the tests that resume it."""
    assert train_stage.main(train_args(setup, tmp_path / "runs")) == 0
    return tmp_path / "runs" / RUN


def error_line(capsys, stage: str) -> str:
    """The one line the stage wrote on stderr."""
    error = capsys.readouterr().err
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{stage}: ") and "Traceback" not in error, error
    return lines[0]


def contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def flip_a_bit(checkpoint: Path) -> None:
    """Flip one bit in the largest tensor's bytes, which torch.load reads without checking the zip's CRC."""
    with zipfile.ZipFile(checkpoint) as archive:
        entry = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda info: info.file_size)
    data = bytearray(checkpoint.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[entry.header_offset + 26:entry.header_offset + 30])
    data[entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2] ^= 0x10
    checkpoint.write_bytes(bytes(data))
    torch.load(checkpoint, weights_only=True)  # still loads: only a checksum of our own can tell


# 1 ---------------------------------------------------------------------------------------------

def test_1_a_flipped_bit_in_best_pt_is_refused_with_the_file_named(run, capsys):
    flip_a_bit(run / "best.pt")
    before = contents(run)
    capsys.readouterr()
    assert evaluate_stage.main(["--run-dir", str(run)]) == 2
    error = error_line(capsys, "eval")
    assert str(run / "best.pt") in error and "checksum" in error and "FORCE=1" in error
    assert contents(run) == before


def test_1_a_flipped_bit_in_last_pt_is_never_resumed(setup, own_run, tmp_path, capsys):
    flip_a_bit(own_run / "last.pt")
    before = contents(own_run)
    capsys.readouterr()
    assert train_stage.main(train_args(setup, tmp_path / "runs", "--epochs", "2")) == 2
    error = error_line(capsys, "train")
    assert str(own_run / "last.pt") in error and "checksum" in error and "FORCE=1" in error
    assert contents(own_run) == before


def test_1_a_checkpoint_from_before_checksums_loads_with_a_warning(run, capsys):
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    del checkpoint["sha256"]
    torch.save(checkpoint, run / "best.pt")
    capsys.readouterr()
    assert evaluate_stage.main(["--run-dir", str(run)]) == 0
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and str(run / "best.pt") in warning[0] and "no checksum" in warning[0]


# 2 ---------------------------------------------------------------------------------------------

def test_2_a_partial_test_split_is_scored_only_when_asked(tmp_path, capsys):
    setup = Setup(tmp_path)
    run = tmp_path / "runs" / RUN
    assert train_stage.main(train_args(setup, tmp_path / "runs")) == 0
    assert evaluate_stage.main(["--run-dir", str(run)]) == 0
    lost = [clip.clip_id for clip in setup.manifest.in_split("test")[:8]]
    shutil.rmtree(setup.features)  # an extraction that lost 8 of the 24 test clips, without saying why
    write_features(setup.features, setup.manifest, skip={setup.skipped, *lost})
    write_failures(setup.features / "failures-part0of1.csv", [(setup.skipped, "no audio file; no video file")])
    before = contents(run)
    capsys.readouterr()
    assert evaluate_stage.main(["--run-dir", str(run)]) == 2
    error = error_line(capsys, "eval")
    assert "8 of the 24 test clips" in error and "make features" in error and "--allow-missing" in error
    assert contents(run) == before

    assert evaluate_stage.main(["--run-dir", str(run), "--allow-missing"]) == 0
    printed = capsys.readouterr().out
    assert "partial test split: 8 of its 24 clips lack features" in printed
    assert "partial test split: 8 of its 24 clips lack features" in (run / "report.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["clips"] == 16 and metrics["partial"]


# 3 ---------------------------------------------------------------------------------------------

def test_3_a_training_through_a_link_takes_the_lock_of_the_folder_it_leads_to(setup, run, tmp_path, capsys):
    link = tmp_path / "link-to-the-run"
    link.symlink_to(run)
    before = contents(run)
    with exclusive_lock(run.with_name("auxformer.lock"), "a test holding the lock"):
        assert train_stage.main(train_args(setup, tmp_path / "runs", "--run-dir", str(link), "--epochs", "2")) == 2
    assert "auxformer.lock" in error_line(capsys, "train")
    assert contents(run) == before


# 4 ---------------------------------------------------------------------------------------------

def test_4_a_run_resumes_with_its_paths_spelled_absolute_instead_of_relative(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(setup.workspace)
    runs = f"runs-{tmp_path.name}"
    relative = [*TINY_STAGE_ARGS, "--corpus-dir", "corpus", "--runs-root", runs]
    assert train_stage.main([*relative, "--epochs", "1"]) == 0
    absolute = [*train_args(setup, setup.workspace / runs), "--epochs", "2"]
    assert train_stage.main(absolute) == 0
    log = (setup.workspace / runs / RUN / "train.log").read_text()
    assert "resuming" in log and "epoch 2/2" in log


def test_4_a_moved_run_resumes_where_it_now_is(setup, own_run, tmp_path):
    moved = tmp_path / "moved"
    (tmp_path / "runs").rename(moved)
    assert train_stage.main(train_args(setup, moved, "--epochs", "2")) == 0
    log = (moved / RUN / "train.log").read_text()
    assert "resuming" in log and "epoch 2/2" in log


def test_4_a_finished_run_that_lost_best_pt_says_so_in_train_and_eval(setup, own_run, tmp_path, capsys):
    (own_run / "best.pt").unlink()
    before = contents(own_run)
    capsys.readouterr()
    assert train_stage.main(train_args(setup, tmp_path / "runs")) == 2
    error = error_line(capsys, "train")
    assert str(own_run / "best.pt") in error and "missing" in error and "FORCE=1" in error
    assert evaluate_stage.main(["--run-dir", str(own_run)]) == 2
    error = error_line(capsys, "eval")
    assert str(own_run / "best.pt") in error and "FORCE=1" in error and "not trained yet" not in error
    assert contents(own_run) == before


BAD_TRAINING_OPTIONS = [
    (["--width", "10", "--num-heads", "3"], "divisible by --num-heads"),
    (["--missing-head-loss", "--missing-stand-in", "zero"], "--missing-head-loss needs --missing-stand-in learned"),
    (["--batch-size", "1000000000"], "--batch-size must be within 1..4096"),
    (["--epochs", "1000000000"], "--epochs must be within 1..10000"),
    (["--lr", "nan"], "--lr must be a finite positive number"),
    (["--lr", "inf"], "--lr must be a finite positive number"),
    (["--lr", "0"], "--lr must be a finite positive number"),
    (["--audio-dropout", "nan"], "--audio-dropout must be within 0..1"),
    (["--grad-clip", "inf"], "--grad-clip must be within"),
]
if not torch.cuda.is_available():
    BAD_TRAINING_OPTIONS.append((["--device", "cuda"], "no CUDA device"))


@pytest.mark.parametrize("options, message", BAD_TRAINING_OPTIONS)
def test_4_bad_training_options_leave_no_folder_or_lock(setup, tmp_path, monkeypatch, capsys, options, message):
    monkeypatch.chdir(tmp_path)
    args = [*train_args(setup, tmp_path / "runs"), "--manifests-dir", str(tmp_path / "manifests"), *options]
    assert train_stage.main(args) == 2
    assert message in error_line(capsys, "train")
    assert list(tmp_path.iterdir()) == []


# 5 ---------------------------------------------------------------------------------------------

def crossval_args(setup: Setup, runs_root: Path, *extra: str, train_extra: tuple[str, ...] = ()) -> list[str]:
    options = shlex.join([*TINY_STAGE_ARGS, *paths(setup), "--epochs", "1", *train_extra])
    return ["--dataset", "demo", "--models", "auxformer", "--partitions", "1", "--seeds", "1",
            "--train-options", options, "--name", "test", "--jobs", "1", "--runs-root", str(runs_root), *extra]


@pytest.fixture(scope="module")
def crossval_root(setup, tmp_path_factory) -> Path:
    """The runs folder of a finished crossval of one run, copied by the tests that move or damage it."""
    root = tmp_path_factory.mktemp("crossval")
    assert crossval_stage.main(crossval_args(setup, root)) == 0
    return root


@pytest.mark.parametrize("name", ["../../../escape", "..", "a/b"])
def test_5_a_crossval_name_is_one_folder_name(setup, tmp_path, capsys, name):
    assert crossval_stage.main([*crossval_args(setup, tmp_path / "runs"), "--name", name]) == 2
    assert "--name" in error_line(capsys, "crossval")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, train_options, message", [
    (["--eval-batch-size", "0"], (), "--eval-batch-size must be within 1..4096"),
    (["--eval-batch-size", "1000000000"], (), "--eval-batch-size must be within 1..4096"),
    ([], ("--width", "10", "--num-heads", "3"), "divisible by --num-heads"),
])
def test_5_bad_crossval_options_are_refused_before_any_training(setup, tmp_path, capsys, options, train_options,
                                                                message):
    assert crossval_stage.main(crossval_args(setup, tmp_path / "runs", *options, train_extra=train_options)) == 2
    assert message in error_line(capsys, "crossval")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", ["0", "1000000000"])
def test_5_an_eval_batch_size_outside_its_range_is_refused_before_scoring(run, capsys, size):
    before = contents(run)
    assert evaluate_stage.main(["--run-dir", str(run), "--batch-size", size]) == 2
    assert "--batch-size must be within 1..4096" in error_line(capsys, "eval")
    assert contents(run) == before


@pytest.mark.parametrize("seconds", ["1e-9", "nan", "inf", "1e9"])
def test_5_a_prediction_window_outside_its_range_is_refused_before_anything_is_made(run, tmp_path, capsys, seconds):
    before = contents(run)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert predict_stage.main(["--run-dir", str(run), "--video", str(video), "--window-seconds", seconds]) == 2
    assert "--window-seconds must be within 0.1..120" in error_line(capsys, "predict")
    assert contents(run) == before


def test_5_an_edited_extraction_yaml_in_a_run_folder_is_refused(run, tmp_path, capsys):
    path = run / "extraction.yaml"
    record = yaml.safe_load(path.read_text())
    record["spec"]["face_rate"] = 7.0
    path.write_text(yaml.safe_dump(record))
    before = contents(run)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert predict_stage.main(["--run-dir", str(run), "--video", str(video), "--device", "cpu"]) == 2
    error = error_line(capsys, "predict")
    assert f"{run}/extraction.yaml was edited" in error and "put back the original" in error
    assert contents(run) == before


def test_4_and_5_a_moved_crossval_finds_its_runs_scored(setup, crossval_root, tmp_path, capsys):
    shutil.copytree(crossval_root, tmp_path / "moved")
    run = next((tmp_path / "moved").rglob("best.pt")).parent
    before = contents(run)
    capsys.readouterr()
    assert crossval_stage.main(crossval_args(setup, tmp_path / "moved")) == 0
    assert "1 runs, 1 of this share scored already, 0 to train and score" in capsys.readouterr().out
    assert contents(run) == before


def test_5_a_crossval_whose_run_lost_metrics_csv_goes_on_from_last_pt(setup, crossval_root, tmp_path, capsys):
    shutil.copytree(crossval_root, tmp_path / "runs")
    run = next((tmp_path / "runs").rglob("best.pt")).parent
    (run / "metrics.csv").unlink()
    before = contents(run)
    capsys.readouterr()
    assert crossval_stage.main(crossval_args(setup, tmp_path / "runs")) == 0
    out = capsys.readouterr()
    assert "0 to train and score" in out.out and "Traceback" not in out.err
    assert contents(run) == before


# 6 ---------------------------------------------------------------------------------------------

def test_6_make_predict_takes_a_video_whose_name_starts_with_a_dash(tmp_path, monkeypatch, capsys):
    printed = subprocess.run(["make", "-n", "predict", "VIDEO=-x.mp4"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    (command,) = [line for line in printed.splitlines() if "-m pipeline.predict" in line]
    words = shlex.split(command)
    monkeypatch.chdir(tmp_path)
    assert predict_stage.main(words[words.index("pipeline.predict") + 1:]) == 2
    assert error_line(capsys, "predict") == "predict: -x.mp4: no such file or folder"


# 7 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", [
    lambda values: b"stage: \xff\xfe not UTF-8\n",
    lambda values: yaml.safe_dump({**values, "stage": ["a", "list"]}).encode(),
    lambda values: yaml.safe_dump({**values, "variant": "transformer"}).encode(),
    lambda values: yaml.safe_dump({**values, "classes": "ANG"}).encode(),
    lambda values: yaml.safe_dump({**values, "data": {**values["data"], "manifest": 3}}).encode(),
], ids=["not-utf8", "stage-a-list", "unknown-variant", "classes-a-string", "manifest-a-number"])
def test_7_a_damaged_config_yaml_is_named_with_the_fix(setup, run, tmp_path, capsys, damage):
    config = run / "config.yaml"
    config.write_bytes(damage(yaml.safe_load(config.read_text())))
    before = contents(run)
    capsys.readouterr()
    for stage, main, args in (("eval", evaluate_stage.main, ["--run-dir", str(run)]),
                              ("train", train_stage.main, train_args(setup, tmp_path / "runs"))):
        assert main(args) == 2
        error = error_line(capsys, stage)
        assert str(config) in error and "FORCE=1" in error
    assert contents(run) == before


@pytest.mark.parametrize("text", [b"some notes about training\n", b"- epochs\n- 3\n", b"epochs: \xff\n",
                                  b"epochs: [unbalanced\n"], ids=["text", "yaml-list", "not-utf8", "not-yaml"])
def test_7_a_preset_file_that_is_no_preset_is_named(setup, tmp_path, monkeypatch, capsys, text):
    preset = tmp_path / "notes.txt"
    preset.write_bytes(text)
    monkeypatch.chdir(tmp_path)
    assert train_stage.main([*train_args(setup, tmp_path / "runs"), "--preset", str(preset)]) == 2
    error = error_line(capsys, "train")
    assert f"{preset} is not a preset" in error
    assert list(tmp_path.iterdir()) == [preset]


@pytest.mark.parametrize("text, named", [(b"epochs: [3]\n", "epochs [3] (not a int)"),
                                         (b"lr: fast\n", "lr 'fast' (not a float)"),
                                         (b"features: {face_rate: often}\n", "face_rate 'often' (not a float)")])
def test_7_a_preset_value_of_the_wrong_type_is_named(setup, tmp_path, monkeypatch, capsys, text, named):
    preset = tmp_path / "preset.yaml"
    preset.write_bytes(text)
    monkeypatch.chdir(tmp_path)
    assert train_stage.main([*train_args(setup, tmp_path / "runs"), "--preset", str(preset)]) == 2
    error = error_line(capsys, "train")
    assert str(preset) in error and named in error
    assert list(tmp_path.iterdir()) == [preset]


def test_10_force_through_a_link_retrains_the_run_it_leads_to(setup, run, tmp_path, capsys):
    link = tmp_path / "link-to-the-run"
    link.symlink_to(run)
    stale = run / "metrics.json"
    assert stale.is_file()
    assert train_stage.main(train_args(setup, tmp_path / "runs", "--run-dir", str(link), "--force")) == 0
    assert not stale.exists() and (run / "best.pt").is_file() and link.is_symlink()


def test_a_full_disk_while_scoring_keeps_the_run_and_is_one_line(run, monkeypatch, capsys):
    before = contents(run)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", disk_full)
    assert evaluate_stage.main(["--run-dir", str(run)]) == 2
    error = error_line(capsys, "eval")
    assert "confusion.png: no space left" in error and "run the same command again" in error
    kept = ("best.pt", "last.pt", "config.yaml", "extraction.yaml", "confusion.png")  # scoring rewrites the rest
    assert {name: contents(run).get(name) for name in kept} == {name: before.get(name) for name in kept}
    assert not [name for name in contents(run) if ".partial" in name]
