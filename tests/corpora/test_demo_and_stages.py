"""The demo corpus through the CREMA-D reader, and the manifest and stats stages end to end."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from corpora import crema_d
from corpora.demo.generate import DemoConfig, generate
from corpora.manifest import MANIFEST_FILE, META_FILE, load_manifest
from pipeline import manifest as manifest_stage
from pipeline import stats as stats_stage

ACTORS = 3
CLIPS_PER_ACTOR = 16  # sentence IEO: neutral once, five emotions at three levels


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate(DemoConfig(out_dir=root, actors=ACTORS, sentences=1, workers=1))
    return root


def test_demo_corpus_is_read_by_the_crema_d_reader_unchanged(demo_root):
    corpus = crema_d.read_corpus(demo_root, "intended")
    assert len(corpus.clips) == ACTORS * CLIPS_PER_ACTOR
    assert corpus.skipped == []
    assert all((demo_root / c.audio_path).is_file() and (demo_root / c.video_path).is_file() for c in corpus.clips)
    assert {c.speaker: c.sex for c in corpus.clips} == {"1001": "Male", "1002": "Female", "1003": "Male"}
    for rule in ("plurality", "majority", "distributional"):
        labelled = crema_d.read_corpus(demo_root, rule)
        assert all(c.label in crema_d.CLASSES for c in labelled.clips if not c.excluded and rule != "distributional")


def run_stage(stage, argv: list[str], capsys) -> tuple[int, str, str]:
    code = stage.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stats_prints_the_report_and_writes_the_chart(demo_root, tmp_path, capsys):
    argv = ["--dataset", "demo", "--corpus-dir", str(demo_root), "--manifests-dir", str(tmp_path),
            "--label-rule", "majority"]
    code, out, err = run_stage(stats_stage, argv, capsys)
    assert code == 0, err
    folder = tmp_path / "demo" / "majority-audiovisual-p1"
    for name in (MANIFEST_FILE, META_FILE, "skipped.csv", "partition.csv", "stats.txt", "class_distribution.png",
                 "stats_config.yaml"):
        assert (folder / name).is_file(), name
    assert (folder / "class_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = load_manifest(folder)
    in_split = [c for c in manifest.clips if c.split]
    assert f"in a split: {len(in_split)}" in out
    total_line = next(line for line in out.splitlines() if line.startswith("total"))
    assert total_line.split()[-1] == str(len(in_split))
    excluded = sum(1 for c in manifest.clips if c.excluded)
    assert f"no majority: {excluded}" in out or excluded == 0
    assert "durations per split" in out and "unreadable" in out
    assert (folder / "stats.txt").read_text() in out


def test_manifest_rerun_is_skipped_and_force_rebuilds(demo_root, tmp_path, capsys):
    argv = ["--dataset", "demo", "--corpus-dir", str(demo_root), "--manifests-dir", str(tmp_path),
            "--label-rule", "intended"]
    assert run_stage(manifest_stage, argv, capsys)[0] == 0
    code, out, _ = run_stage(manifest_stage, argv, capsys)
    assert code == 0 and "is current" in out
    code, out, _ = run_stage(manifest_stage, [*argv, "--force"], capsys)
    assert code == 0 and "written" in out


def test_moved_corpus_is_found_through_a_new_root(demo_root, tmp_path, capsys):
    argv = ["--dataset", "demo", "--corpus-dir", str(demo_root), "--manifests-dir", str(tmp_path / "m"),
            "--label-rule", "majority"]
    assert run_stage(manifest_stage, argv, capsys)[0] == 0
    moved = tmp_path / "moved"
    shutil.copytree(demo_root, moved)
    manifest = load_manifest(tmp_path / "m" / "demo" / "majority-audiovisual-p1", corpus_root=moved)
    assert all(manifest.media(c.audio_path).is_file() for c in manifest.clips)
    assert manifest.root == moved


@pytest.mark.parametrize(("argv", "message"), [
    (["--dataset", "demo", "--corpus-dir", "no/such/folder"], "no/such/folder: corpus folder not found"),
    (["--dataset", "crema-d"], "unknown dataset 'crema-d'; choose one of demo, crema, improv, folder"),
    (["--dataset", "demo", "--label-rule", "P"], "unknown label rule 'P' for CREMA-D"),
    (["--dataset", "demo", "--ratings", "video"], "unknown rating modality 'video'"),
    (["--dataset", "demo", "--partition", "6"], "--partition must be one of 1-5"),
    (["--dataset", "folder"], "--corpus-dir is required for dataset folder"),
])
def test_bad_input_stops_with_one_line_and_exit_code_2(demo_root, tmp_path, capsys, argv, message):
    if "--corpus-dir" not in argv and argv[1] == "demo":
        argv = [*argv, "--corpus-dir", str(demo_root)]
    code, out, err = run_stage(manifest_stage, [*argv, "--manifests-dir", str(tmp_path)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err


def test_a_vote_table_in_another_format_names_the_file(demo_root, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(demo_root, broken)
    (broken / crema_d.TABULATED_VOTES).write_text("clip,votes\n1001_IEO_NEU_XX,3\n")
    code, _, err = run_stage(manifest_stage, ["--dataset", "demo", "--corpus-dir", str(broken), "--manifests-dir",
                                              str(tmp_path / "out"), "--label-rule", "majority"], capsys)
    assert code == 2
    assert "tabulatedVotes.csv: expected the columns A,D,F,H,N,S,fileName" in err


def test_an_unparseable_clip_name_is_skipped_and_reported(demo_root, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(demo_root, odd)
    (odd / crema_d.AUDIO_DIR / "1001_XYZ_ANG_XX.wav").touch()
    corpus = crema_d.read_corpus(odd, "majority")
    assert len(corpus.clips) == ACTORS * CLIPS_PER_ACTOR
    assert [(s.path, "unknown sentence code" in s.reason) for s in corpus.skipped] == [
        ("AudioWAV/1001_XYZ_ANG_XX.wav", True)]


def test_a_clip_with_one_file_is_kept_as_single_modality(demo_root, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(demo_root, partial)
    (partial / crema_d.VIDEO_DIR / "1002_IEO_SAD_HI.flv").unlink()
    clip = next(c for c in crema_d.read_corpus(partial, "intended").clips if c.clip_id == "1002_IEO_SAD_HI")
    assert clip.audio_path and not clip.video_path and clip.label == "sad"
