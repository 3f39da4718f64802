"""Fault injection, one test per defect of the reliability issue: bad media, damaged outputs, wrong
commands, interrupted and concurrent runs. Each asserts the exit status, that the message names
the file and the fix, and that nothing already written is lost.

Everything runs on one small real demo corpus (three actors, one sentence: 48 clips) and one real
extraction of it, copied where a test damages it. The stages are called through their main(), as
make calls them, except where a separate process is the point (kill -9, concurrent runs).
"""
from __future__ import annotations

import csv
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import safetensors.torch
import torch
import yaml

import extract.engine as engine_module
import extract.shards as shards_module
from common.locks import exclusive_lock
from corpora.demo.generate import DemoConfig, generate
from corpora.registry import ManifestConfig, build_manifest
from extract.engine import FeaturesConfig, extract, read_failures
from extract.shards import FeatureStore, ShardWriter, checksum, clip_ids_in, read_shard, shard_files
from extract.tiny_wav2vec2 import saved_wav2vec2
from extract.verify import verify
from pipeline import evaluate as evaluate_stage
from pipeline import features as features_stage
from pipeline import manifest as manifest_stage
from pipeline import predict as predict_stage
from pipeline import stats as stats_stage
from pipeline import train as train_stage
from pipeline import verify_features as verify_stage
from training.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[2]
CLIP = "1001_IEO_ANG_HI"
TINY_TRAIN = ["--preset", "none", "--epochs", "1", "--width", "8", "--num-heads", "2", "--num-layers", "1",
              "--batch-size", "16", "--num-workers", "0", "--device", "cpu"]

pytestmark = pytest.mark.usefixtures("face_model")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "corpus"
    generate(DemoConfig(out_dir=root, actors=3, sentences=1, seed=11, workers=2))
    return root


@pytest.fixture(scope="module")
def extraction(corpus, tmp_path_factory) -> Path:
    """The extraction every test copies: data/features/demo/<name>/ below a workspace of its own."""
    folder, report = extract(FeaturesConfig(dataset="demo", corpus_dir=str(corpus),
                                            out_root=tmp_path_factory.mktemp("pristine") / "data" / "features",
                                            workers=2, clips_per_shard=8, device="cpu"))
    assert report.clips == 48
    return folder


@pytest.fixture
def workspace(extraction, tmp_path, monkeypatch) -> Path:
    """A working directory holding a copy of the extraction where the stages look for it."""
    shutil.copytree(extraction, tmp_path / "data" / "features" / "demo" / extraction.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def features_args(corpus: Path, *extra: str) -> list[str]:
    return ["--dataset", "demo", "--corpus-dir", str(corpus), "--workers", "2", "--clips-per-shard", "8",
            "--device", "cpu", *extra]


def train_args(corpus: Path, *extra: str) -> list[str]:
    return ["--dataset", "demo", "--corpus-dir", str(corpus), *TINY_TRAIN, *extra]


def copied_folder(workspace: Path, extraction: Path) -> Path:
    return workspace / "data" / "features" / "demo" / extraction.name


def train_clip(corpus: Path, workspace: Path) -> str:
    """A clip of partition 1's train split."""
    folder, _ = build_manifest(ManifestConfig(dataset="demo", corpus_dir=str(corpus),
                                              manifests_dir=workspace / "scratch"))
    return next(line.split(",")[0] for line in (folder / "manifest.csv").read_text().splitlines() if ",train," in line)


def rewrite_clip(folder: Path, clip_id: str, change, keep_checksum: bool = False) -> Path:
    """Apply ``change`` to a clip's log-mel in its shard; returns the shard."""
    with FeatureStore(folder) as store:
        entry = store.index[clip_id]
    path, row = folder / entry["shard"], int(entry["row"])
    with h5py.File(path, "r+") as h5:
        table = h5["clips"]
        a0, na = int(table["audio_offset"][row]), int(table["audio_frames"][row])
        v0, nv = int(table["video_offset"][row]), int(table["video_frames"][row])
        values = h5["audio"][a0:a0 + na]
        change(values)
        h5["audio"][a0:a0 + na] = values
        if keep_checksum:  # as if the extraction itself had written the values
            arrays = {name: h5[name][a0:a0 + na] if name == "audio" else h5[name][v0:v0 + nv]
                      for name in ("audio", "embedding", "valid", "boxes", "timestamps")}
            table["crc32"][row] = checksum(arrays)
    return path


# 1 ---------------------------------------------------------------------------------------------

def test_1_non_finite_features_stop_training_with_the_clip_and_shard_named(workspace, extraction, corpus, capsys):
    clip_id = train_clip(corpus, workspace)

    def one_nan(values):
        values[0, 0] = np.nan

    shard = rewrite_clip(copied_folder(workspace, extraction), clip_id, one_nan, keep_checksum=True)
    assert train_stage.main(train_args(corpus)) == 2
    error = capsys.readouterr().err
    assert clip_id in error and shard.name in error and "non-finite" in error and "rerun make features" in error
    assert not Path("runs/demo/p1/auxformer/best.pt").exists()


def test_1_a_model_with_non_finite_weights_never_prints_nan(workspace, corpus, capsys):
    assert train_stage.main(train_args(corpus)) == 0
    run = RunFolder(Path("runs/demo/p1/auxformer"))
    checkpoint = run.load_checkpoint()
    checkpoint["model_state"] = {name: torch.full_like(value, float("nan")) if value.is_floating_point() else value
                                 for name, value in checkpoint["model_state"].items()}
    run.save_checkpoint(checkpoint, "best.pt")  # as training would have written them
    capsys.readouterr()
    assert evaluate_stage.main(["--dataset", "demo"]) == 2
    assert "non-finite" in capsys.readouterr().err
    video = corpus / "VideoFlash" / f"{CLIP}.flv"
    assert predict_stage.main(["--dataset", "demo", "--video", str(video), "--device", "cpu"]) == 1
    out = capsys.readouterr()
    assert "nan" not in out.out.lower() and "non-finite" in out.out


# 2 ---------------------------------------------------------------------------------------------

def test_2_a_flipped_bit_is_caught_by_verify_and_training(workspace, extraction, corpus, capsys):
    clip_id = train_clip(corpus, workspace)

    def flip_a_bit(values):
        values.view(np.uint32)[3, 5] ^= 1 << 20

    shard = rewrite_clip(copied_folder(workspace, extraction), clip_id, flip_a_bit)
    assert verify_stage.main(["--dataset", "demo", "--corpus-dir", str(corpus)]) == 1
    error = capsys.readouterr().err
    assert shard.name in error and clip_id in error and "checksum" in error
    assert train_stage.main(train_args(corpus)) == 2
    assert shard.name in capsys.readouterr().err


# 3 ---------------------------------------------------------------------------------------------

def test_3_training_never_takes_an_extraction_made_with_other_options(workspace, corpus, capsys):
    assert train_stage.main(train_args(corpus, "--detector", "haar")) == 2
    error = capsys.readouterr().err
    assert "haar" in error and "make features DATASET=demo" in error


def test_3_training_refuses_an_incomplete_extraction(workspace, extraction, corpus, capsys):
    folder = copied_folder(workspace, extraction)
    with FeatureStore(folder) as store:  # the shard of a train clip: half of the train split
        (folder / store.index[train_clip(corpus, workspace)]["shard"]).unlink()
    (folder / "index.csv").unlink()
    assert verify_stage.main(["--dataset", "demo", "--corpus-dir", str(corpus)]) == 1  # rebuilds the index
    assert train_stage.main(train_args(corpus)) == 2
    error = capsys.readouterr().err
    assert "incomplete" in error and "make features DATASET=demo" in error


def test_3_and_15_a_missing_corpus_leaves_no_extraction_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert features_stage.main(["--dataset", "demo", "--corpus-dir", str(tmp_path / "nonexistent")]) == 2
    assert "corpus folder not found" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


# 4 ---------------------------------------------------------------------------------------------

def test_4_a_second_run_of_the_same_part_is_refused(workspace, extraction, corpus, capsys):
    folder = copied_folder(workspace, extraction)
    with exclusive_lock(folder / "part0of1.lock", "a test holding the lock"):
        assert features_stage.main(features_args(corpus)) == 2
    error = capsys.readouterr().err
    assert "part0of1.lock" in error and f"pid {os.getpid()}" in error
    assert features_stage.main(features_args(corpus)) == 0  # released: runs (and has nothing to do)


def test_4_a_rerun_repairs_clips_written_twice(workspace, extraction, corpus):
    folder = copied_folder(workspace, extraction)
    first, second = shard_files(folder)[:2]
    shutil.copy(first, folder / "part0of1-copy.h5")  # a shard whose clips are all written twice
    # and one whose clips are partly: half of the first shard's, and the second's (now only there)
    mixed = read_shard(first)[:4] + read_shard(second)
    with h5py.File(second, "r") as h5:
        writer = ShardWriter(folder, "part0of1", len(mixed), h5["audio"].shape[1], h5["embedding"].shape[1], 100.0,
                             folder.name)
    for clip in mixed:
        writer.add(clip)
    second.unlink()
    assert any("in 2 shards" in p for p in verify(folder))
    assert features_stage.main(features_args(corpus)) == 0
    assert verify(folder) == []
    with FeatureStore(folder) as store:
        assert len(store.clip_ids()) == 48


def test_4_a_second_training_of_the_same_run_is_refused_and_leftovers_go(workspace, corpus, capsys):
    run = Path("runs/demo/p1/auxformer")
    run.mkdir(parents=True)
    with exclusive_lock(Path("runs/demo/p1/auxformer.lock"), "a test holding the lock"):
        assert train_stage.main(train_args(corpus)) == 2
    assert "auxformer.lock" in capsys.readouterr().err
    leftover = run / "curve.png.4242-0badcafe.partial"  # what a run killed in mid-write leaves
    leftover.write_bytes(b"half a picture")
    assert train_stage.main(train_args(corpus)) == 0
    assert not leftover.exists() and (run / "curve.png").is_file()


def test_4_two_parts_extract_into_one_folder_at_once(corpus, tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipeline.features", *features_args(corpus, "--workers", "1"),
               "--out-root", str(tmp_path), "--num-shards", "2"]
    parts = [subprocess.Popen([*command, "--shard-index", str(index)], env=environment, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    for part in parts:
        _, error = part.communicate(timeout=300)
        assert part.returncode == 0, error[-2000:]
    (folder,) = (tmp_path / "demo").iterdir()
    assert verify(folder) == []


# 5 ---------------------------------------------------------------------------------------------

def test_5_a_manifest_notices_clips_added_to_the_corpus(corpus, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    config = ManifestConfig(dataset="demo", corpus_dir=str(copy), manifests_dir=tmp_path / "manifests")
    folder, written = build_manifest(config)
    assert written and not build_manifest(config)[1]
    for kind, suffix in (("AudioWAV", "wav"), ("VideoFlash", "flv")):
        shutil.copy(copy / kind / f"1001_IEO_NEU_XX.{suffix}", copy / kind / f"1001_TIE_NEU_XX.{suffix}")
    folder, written = build_manifest(config)
    assert written and "1001_TIE_NEU_XX" in (folder / "manifest.csv").read_text()


def one_line(capsys, stage: str) -> str:
    """The one line the stage wrote on stderr, besides the progress bar's."""
    error = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", error) if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"{stage}: ") and "Traceback" not in error, error
    return lines[0]


def mix_speakers(rows: list[list[str]]) -> None:
    """Move one clip of a test speaker into train, so that speaker is in two splits."""
    test_row = next(row for row in rows if row[7] == "test")
    test_row[7] = "train"


def misspell_a_split(rows: list[list[str]]) -> None:
    next(row for row in rows if row[7] == "test")[7] = "tset"


@pytest.mark.parametrize("damage, message", [(misspell_a_split, "split 'tset' is none of"),
                                             (mix_speakers, "each speaker in one split")])
def test_5_a_damaged_manifest_is_refused_with_its_line_and_the_fix(workspace, corpus, capsys, damage, message):
    folder, _ = build_manifest(ManifestConfig(dataset="demo", corpus_dir=str(corpus)))
    path = folder / "manifest.csv"
    with path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    damage(rows[1:])
    with path.open("w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    damaged = path.read_bytes()
    assert train_stage.main(train_args(corpus)) == 2
    error = one_line(capsys, "train")
    assert str(path) in error and " line " in error and message in error and "make manifest FORCE=1" in error
    assert path.read_bytes() == damaged and not Path("runs").exists()


def test_5_a_manifest_that_is_not_utf8_is_refused_with_the_fix(workspace, corpus, capsys):
    folder, _ = build_manifest(ManifestConfig(dataset="demo", corpus_dir=str(corpus)))
    path = folder / "manifest.csv"
    path.write_bytes(path.read_bytes().replace(b"train", b"tr\xffin", 1))
    assert train_stage.main(train_args(corpus)) == 2
    error = one_line(capsys, "train")
    assert str(path) in error and "not UTF-8" in error and "make manifest FORCE=1" in error
    assert not Path("runs").exists()


def test_5_verify_with_another_corpus_copy_leaves_the_manifests_of_the_first_alone(workspace, corpus, capsys):
    build_manifest(ManifestConfig(dataset="demo", corpus_dir=str(corpus)))
    copy = workspace / "copy"
    shutil.copytree(corpus, copy)
    (copy / "AudioWAV" / "notes.txt").write_text("a file the first corpus lacks")
    assert verify_stage.main(["--dataset", "demo", "--corpus-dir", str(copy), "--strict"]) == 0
    assert "made from the corpus as it was" not in capsys.readouterr().err


# 6 ---------------------------------------------------------------------------------------------

def test_6_unparseable_clip_names_are_counted_where_people_look(corpus, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    (copy / "AudioWAV" / "notes about the session.wav").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert features_stage.main(features_args(copy)) == 0
    error = capsys.readouterr().err
    assert "1 files of the corpus are no clip" in error and "skipped.csv" in error
    assert stats_stage.main(["--dataset", "demo", "--corpus-dir", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "1 files of the corpus are no clip" in out and "skipped.csv" in out


# 7 and 8 ----------------------------------------------------------------------------------------

def test_7_a_truncated_video_is_reported_and_fails_strict_runs(corpus, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    flv = copy / "VideoFlash" / f"{CLIP}.flv"
    flv.write_bytes(flv.read_bytes()[: int(flv.stat().st_size * 0.3)])
    monkeypatch.chdir(tmp_path)
    assert features_stage.main(features_args(copy)) == 0
    out = capsys.readouterr()
    assert "1 with audio and video of different lengths" in out.out and CLIP in out.err
    (folder,) = (tmp_path / "data" / "features" / "demo").iterdir()
    assert CLIP in read_failures(folder, kept=True)
    assert features_stage.main(features_args(copy, "--strict")) == 1
    assert verify_stage.main(["--dataset", "demo", "--corpus-dir", str(copy), "--strict"]) == 1


def test_7_sound_demo_videos_get_no_truncation_note(workspace, corpus, capsys):
    assert train_stage.main(train_args(corpus)) == 0
    folder = workspace / "videos"
    folder.mkdir()
    for path in sorted((corpus / "VideoFlash").glob("1001_*.flv"))[:4]:
        shutil.copy(path, folder)
    assert predict_stage.main(["--dataset", "demo", "--video", str(folder), "--device", "cpu"]) == 0
    assert "truncated" not in capsys.readouterr().out


def test_8_an_unusable_wav_falls_back_to_the_video_track(corpus, tmp_path, monkeypatch):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    (copy / "AudioWAV" / f"{CLIP}.wav").write_text("this is text, not audio\n")
    monkeypatch.chdir(tmp_path)
    assert features_stage.main(features_args(copy)) == 0
    (folder,) = (tmp_path / "data" / "features" / "demo").iterdir()
    with FeatureStore(folder) as store:
        clip = store.load(CLIP)
    assert clip.has_audio and "used the video's own audio track" in clip.audio_note


# 9 to 13 ----------------------------------------------------------------------------------------

def test_9_a_truncated_shard_is_named_with_the_fix(workspace, extraction, corpus, capsys):
    folder = copied_folder(workspace, extraction)
    with FeatureStore(folder) as store:  # a shard training reads
        shard = folder / store.index[train_clip(corpus, workspace)]["shard"]
    shard.write_bytes(shard.read_bytes()[:3000])
    for main, args in ((verify_stage.main, ["--dataset", "demo", "--corpus-dir", str(corpus)]),
                       (train_stage.main, train_args(corpus)), (features_stage.main, features_args(corpus))):
        assert main(args) == 2
        error = capsys.readouterr().err
        assert shard.name in error and "delete it" in error and "Traceback" not in error
    shard.unlink()
    assert features_stage.main(features_args(corpus)) == 0  # the next run redoes its clips
    assert verify(copied_folder(workspace, extraction)) == []


def test_10_a_deleted_index_is_rebuilt_or_named(workspace, extraction, corpus, capsys):
    folder = copied_folder(workspace, extraction)
    (folder / "index.csv").unlink()
    assert train_stage.main(train_args(corpus)) == 2
    assert "index.csv not found" in capsys.readouterr().err
    assert verify_stage.main(["--dataset", "demo", "--corpus-dir", str(corpus)]) == 0
    assert train_stage.main(train_args(corpus)) == 0


def test_11_a_damaged_or_edited_extraction_yaml(workspace, extraction, corpus, capsys):
    path = copied_folder(workspace, extraction) / "extraction.yaml"
    text = path.read_text()
    path.write_text(text + "\n  : [unbalanced\n")
    assert verify_stage.main(["--dataset", "demo"]) == 2
    error = capsys.readouterr().err
    assert "extraction.yaml is damaged" in error and "Traceback" not in error
    record = yaml.safe_load(text)
    record["models"]["encoder_sha256"] = "0" * 64
    path.write_text(yaml.safe_dump(record))
    assert verify_stage.main(["--dataset", "demo", "--corpus-dir", str(corpus)]) == 1
    assert "encoder_sha256" in capsys.readouterr().err


def test_11_an_edited_spec_in_extraction_yaml_is_refused_with_the_fix(workspace, extraction, corpus, capsys):
    folder = copied_folder(workspace, extraction)
    path = folder / "extraction.yaml"
    record = yaml.safe_load(path.read_text())
    record["spec"]["face_rate"] = 7.0
    path.write_text(yaml.safe_dump(record))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert train_stage.main(train_args(corpus)) == 2
    error = one_line(capsys, "train")
    assert f"{folder.name}/extraction.yaml was edited" in error and "put back the original" in error
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before and not Path("runs").exists()


def test_11_a_renamed_extraction_folder_still_loads(workspace, extraction, corpus):
    folder = copied_folder(workspace, extraction)
    renamed = folder.rename(folder.parent / "mine")
    assert verify(renamed) == []


def test_11_a_shard_copied_from_another_extraction_is_refused(workspace, extraction, corpus, capsys):
    folder = copied_folder(workspace, extraction)
    with FeatureStore(folder) as store:
        shard = folder / store.index[train_clip(corpus, workspace)]["shard"]
    with h5py.File(shard, "r+") as h5:  # as the extraction with another face rate wrote it
        h5.attrs["extraction"] = "fer-mediapipe-r7-k4-mel64-0123abcd"
    damaged = shard.read_bytes()
    assert any(shard.name in problem and "copied into" in problem for problem in verify(folder))
    assert train_stage.main(train_args(corpus)) == 2
    error = one_line(capsys, "train")
    assert f"{folder.name}/{shard.name}" in error and "copied into" in error
    assert "delete it and rerun make features" in error
    assert shard.read_bytes() == damaged and not Path("runs/demo/p1/auxformer/best.pt").exists()


def test_12_an_unwritable_output_is_found_before_any_work(corpus, tmp_path, capsys):
    blocker = tmp_path / "features-is-a-file"
    blocker.write_text("")
    assert features_stage.main(features_args(corpus, "--out-root", str(blocker))) == 2
    assert "cannot write there" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders, so the case cannot occur")
def test_12_a_read_only_output_folder_is_found_before_any_work(corpus, tmp_path, capsys):
    out = tmp_path / "read-only"
    out.mkdir(mode=0o555)
    assert features_stage.main(features_args(corpus, "--out-root", str(out))) == 2
    assert "cannot write there" in capsys.readouterr().err


def test_13_a_corrupt_checkpoint_is_named(workspace, corpus, capsys):
    assert train_stage.main(train_args(corpus)) == 0
    best = Path("runs/demo/p1/auxformer/best.pt")
    best.write_bytes(best.read_bytes()[:1000])
    capsys.readouterr()
    assert evaluate_stage.main(["--dataset", "demo"]) == 2
    assert str(best) in capsys.readouterr().err
    video = corpus / "VideoFlash" / f"{CLIP}.flv"
    assert predict_stage.main(["--dataset", "demo", "--video", str(video), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert str(best) in error and "damaged" in error


# 14 to 16 ---------------------------------------------------------------------------------------

def _children(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def test_14_workers_die_with_a_killed_extraction(corpus, tmp_path):
    command = [sys.executable, "-m", "pipeline.features", *features_args(corpus), "--out-root", str(tmp_path)]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline, workers = time.monotonic() + 120, set()
    while time.monotonic() < deadline and len(workers) < 2:
        workers = _children(process.pid)
        time.sleep(0.2)
    assert len(workers) >= 2, "the workers did not start in time"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.1)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert not alive


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "voxceleb"], "unknown dataset 'voxceleb'"),
    (["--workers", "-1"], "--workers must be within 0..256"),
    (["--clips-per-shard", "0"], "--clips-per-shard"),
    (["--clips-per-shard", "1000000000"], "--clips-per-shard must be within 1..10000"),
    (["--embed-batch", "1000000000"], "--embed-batch must be within 1..8192"),
    (["--detect-every", "100000"], "--detect-every must be within 1..1000"),
    (["--max-gap-frames", "1000000000"], "--max-gap-frames must be within 3..1000"),
])
def test_15_bad_options_are_refused_before_anything_is_created(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert features_stage.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_15_option_prefixes_are_not_taken_for_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        features_stage.main(["--worker", "2"])
    assert exit_info.value.code == 2 and "--worker" in capsys.readouterr().err


# 16: tests/pipeline/test_predict.py, test_links_that_leave_the_folder_are_skipped_unless_asked.


# 16 ---------------------------------------------------------------------------------------------

def test_16_force_after_a_multi_part_extraction_redoes_every_clip(corpus, tmp_path, capsys):
    out = ["--out-root", str(tmp_path / "features")]
    for index in (0, 1):
        assert features_stage.main(features_args(corpus, *out, "--num-shards", "2", "--shard-index", str(index))) == 0
    capsys.readouterr()
    assert features_stage.main(features_args(corpus, *out, "--force")) == 0
    assert "48 clips extracted (0 already done)" in capsys.readouterr().out
    (folder,) = (tmp_path / "features" / "demo").iterdir()
    assert {path.name.split("-")[0] for path in shard_files(folder)} == {"part0of1"}
    assert verify(folder) == []


def test_16_shards_of_the_layout_before_the_audio_rename_are_refused_with_the_fix(workspace, extraction, corpus,
                                                                                  capsys):
    folder = copied_folder(workspace, extraction)
    with FeatureStore(folder) as store:
        shard = folder / store.index[train_clip(corpus, workspace)]["shard"]
    with h5py.File(shard, "r+") as h5:  # what layout 2 wrote: the audio features under "mel"
        h5.attrs["layout_version"] = 2
        h5.move("audio", "mel")
    assert train_stage.main(train_args(corpus)) == 2
    error = capsys.readouterr().err
    assert shard.name in error and "layout 2" in error and "make features FORCE=1" in error


# Full disks, dead workers ------------------------------------------------------------------------

def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_features_keeps_the_shards_written_and_resumes(corpus, tmp_path, monkeypatch,
                                                                                 capsys):
    monkeypatch.chdir(tmp_path)
    write_shard, written = shards_module._write_shard, []

    def full_at_the_third(h5, clips, *rest):
        if len(written) == 2:
            disk_full()
        write_shard(h5, clips, *rest)
        written.append([clip.clip_id for clip in clips])

    monkeypatch.setattr(shards_module, "_write_shard", full_at_the_third)
    assert features_stage.main(features_args(corpus)) == 2
    error = one_line(capsys, "features")
    assert "no space left" in error and "what was written before is kept" in error and "run the same command" in error
    (folder,) = Path("data/features/demo").iterdir()
    assert sorted(clip for path in shard_files(folder) for clip in clip_ids_in(path)) == sorted(sum(written, []))
    assert not list(folder.glob("*.partial"))
    monkeypatch.setattr(shards_module, "_write_shard", write_shard)
    assert features_stage.main(features_args(corpus)) == 0
    assert "(16 already done)" in capsys.readouterr().out and verify(folder) == []


def test_a_full_disk_while_writing_the_manifest_is_one_line(workspace, corpus, monkeypatch, capsys):
    monkeypatch.setattr(Path, "write_text", disk_full)
    assert manifest_stage.main(["--dataset", "demo", "--corpus-dir", str(corpus)]) == 2
    assert "no space left" in one_line(capsys, "manifest")


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(workspace, corpus, monkeypatch, capsys):
    monkeypatch.setattr(torch, "save", disk_full)
    assert train_stage.main(train_args(corpus)) == 2
    error = one_line(capsys, "train")
    assert "last.pt: no space left" in error or "best.pt: no space left" in error
    assert Path("runs/demo/p1/auxformer/config.yaml").is_file()


def die(jobs):
    os._exit(9)


def test_a_killed_extraction_worker_is_one_line_and_the_shards_are_kept(workspace, extraction, corpus, monkeypatch,
                                                                       capsys):
    folder = copied_folder(workspace, extraction)
    for shard in shard_files(folder)[:2]:
        shard.unlink()
    kept = {path.name: path.read_bytes() for path in shard_files(folder)}
    monkeypatch.setattr(engine_module, "_work", die)
    assert features_stage.main(features_args(corpus)) == 2
    error = one_line(capsys, "features")
    assert "worker died" in error and "kept" in error and "make features again" in error
    assert {path.name: path.read_bytes() for path in shard_files(folder)} == kept


def test_a_damaged_development_clip_read_by_a_loader_worker_is_one_line(workspace, extraction, corpus, capsys):
    folder, _ = build_manifest(ManifestConfig(dataset="demo", corpus_dir=str(corpus),
                                              manifests_dir=workspace / "scratch"))
    clip_id = next(line.split(",")[0] for line in (folder / "manifest.csv").read_text().splitlines()
                   if ",development," in line)

    def flip_a_bit(values):
        values.view(np.uint32)[3, 5] ^= 1 << 20

    shard = rewrite_clip(copied_folder(workspace, extraction), clip_id, flip_a_bit)
    assert train_stage.main([*train_args(corpus), "--num-workers", "1"]) == 2
    error = one_line(capsys, "train")
    assert shard.name in error and clip_id in error and "delete it and rerun make features" in error


# Damaged tables ----------------------------------------------------------------------------------

def test_non_numeric_values_in_index_csv_are_one_line_with_the_fix(workspace, extraction, corpus, capsys):
    index = copied_folder(workspace, extraction) / "index.csv"
    with index.open(newline="") as stream:
        rows = list(csv.reader(stream))
    rows[3][rows[0].index("audio_dim")] = "eighty"
    with index.open("w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    damaged = index.read_bytes()
    assert train_stage.main(train_args(corpus)) == 2
    error = one_line(capsys, "train")
    assert "index.csv line 4: audio_dim 'eighty'" in error and "make verify-features" in error
    assert index.read_bytes() == damaged


def test_a_failures_file_that_is_not_utf8_is_one_line_with_the_fix(workspace, extraction, corpus, capsys):
    path = copied_folder(workspace, extraction) / "failures-part0of1.csv"
    path.write_bytes(b"clip_id,reason,kept\r\n1001_IEO_ANG_HI,\xff\xfe broken,0\r\n")
    assert verify_stage.main(["--dataset", "demo", "--corpus-dir", str(corpus)]) == 2
    error = one_line(capsys, "verify-features")
    assert "failures-part0of1.csv is damaged" in error and "make features again" in error


@pytest.mark.parametrize("write", [lambda path: path.write_text("0.1 0.2 0.3\n"),
                                   lambda path: np.save(path, np.array([{"a": 1}, None], dtype=object)),
                                   lambda path: np.save(path, np.array([["a", "b"]]))])
def test_an_imported_npy_file_that_holds_no_numbers_is_one_line(corpus, tmp_path, monkeypatch, capsys, write):
    monkeypatch.chdir(tmp_path)
    frames = tmp_path / "frames"
    frames.mkdir()
    write(frames / "1001_IEO_ANG_HI.npy")
    args = features_args(corpus, "--video-features-from", str(frames), "--video-rate", "30")
    assert features_stage.main(args) == 2
    error = one_line(capsys, "features")
    assert "1001_IEO_ANG_HI.npy" in error and "numpy.save" in error


def drop_a_layer_tensor(path: Path) -> None:
    tensors = safetensors.torch.load_file(path)
    del tensors[next(name for name in tensors if name.startswith("encoder.layers.0."))]
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})


def cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, message", [(drop_a_layer_tensor, "lacks 1 of the model's tensors"),
                                             (cut_in_half, "the weights do not load")])
def test_a_damaged_wav2vec2_checkpoint_is_one_line(corpus, tmp_path, monkeypatch, capsys, damage, message):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "tiny-wav2vec2"
    saved_wav2vec2(weights)
    damage(weights / "model.safetensors")
    args = features_args(corpus, "--audio-encoder", "wav2vec2", "--audio-weights", str(weights), "--audio-layer", "2")
    assert features_stage.main(args) == 2
    error = one_line(capsys, "features")
    assert str(weights) in error and message in error and "fetch the" in error
    assert not Path("data").exists()


def test_links_that_lead_out_of_the_corpus_are_skipped_unless_asked(corpus, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    for kind, suffix in (("AudioWAV", "wav"), ("VideoFlash", "flv")):
        (copy / kind / f"{CLIP}.{suffix}").unlink()
        (copy / kind / f"{CLIP}.{suffix}").symlink_to(corpus / kind / f"{CLIP}.{suffix}")
    monkeypatch.chdir(tmp_path)
    assert features_stage.main(features_args(copy)) == 0
    (folder,) = Path("data/features/demo").iterdir()
    failures = read_failures(folder)
    assert "a link that leads out of" in failures[CLIP] and "--follow-links" in failures[CLIP]
    with FeatureStore(folder) as store:
        assert CLIP not in store and len(store.clip_ids()) == 47
    assert features_stage.main(features_args(copy, "--follow-links")) == 0
    assert "1 clips extracted (47 already done)" in capsys.readouterr().out
    with FeatureStore(folder) as store:
        assert CLIP in store
    assert CLIP not in read_failures(folder)
