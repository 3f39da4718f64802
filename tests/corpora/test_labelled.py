"""Your own labelled corpus: a labels CSV over a folder of clips copied from the demo corpus."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from corpora.manifest import CorpusError, load_manifest, load_skipped
from corpora.registry import ManifestConfig, build_manifest, corpus_clips
from pipeline.manifest import main as manifest_main

# Six speakers, each with an angry and a happy clip: enough for a 4/1/1 partition with both classes in
# every split. The demo has eight clips of each of these emotions.
SPEAKERS = ("ann", "bob", "cat", "dan", "eve", "fay")
DEMO_CLIPS = {"angry": [f"{actor}_{clip}" for actor in (1001, 1002) for clip in ("IEO_ANG_HI", "IEO_ANG_MD",
                                                                                  "IEO_ANG_LO", "TIE_ANG_XX")],
              "happy": [f"{actor}_{clip}" for actor in (1001, 1002) for clip in ("IEO_HAP_HI", "IEO_HAP_MD",
                                                                                  "IEO_HAP_LO", "TIE_HAP_XX")]}
HEADER = "video,audio,label,speaker"


@pytest.fixture
def corpus(demo_corpus, tmp_path) -> Path:
    """clips/<demo id>.wav for every clip of DEMO_CLIPS, and the video of the first two."""
    root = tmp_path / "mine"
    (root / "clips").mkdir(parents=True)
    for clip in DEMO_CLIPS["angry"] + DEMO_CLIPS["happy"]:
        shutil.copy(demo_corpus / "AudioWAV" / f"{clip}.wav", root / "clips")
    for clip in (DEMO_CLIPS["angry"][0], DEMO_CLIPS["happy"][0]):
        shutil.copy(demo_corpus / "VideoFlash" / f"{clip}.flv", root / "clips")
    return root


def rows(split: dict[str, str] | None = None) -> list[str]:
    """A labels line per speaker and class; the first two clips as video (one with its WAV, one without)."""
    lines = []
    for index, speaker in enumerate(SPEAKERS):
        for label in ("happy", "angry"):
            clip = DEMO_CLIPS[label][index]
            video = f"clips/{clip}.flv" if index == 0 else ""
            audio = "" if index == 0 and label == "happy" else f"clips/{clip}.wav"
            extra = f",{split[speaker]}" if split else ""
            lines.append(f"{video},{audio},{label},{speaker}{extra}")
    return lines


def write_labels(root: Path, lines: list[str], header: str = HEADER, name: str = "labels.csv") -> Path:
    path = root / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def manifest(root: Path, tmp_path: Path, **options) -> Path:
    config = ManifestConfig(dataset="labelled", corpus_dir=str(root), manifests_dir=tmp_path / "manifests", **options)
    return build_manifest(config)[0]


def test_generated_partition_keeps_speakers_apart_and_every_class_in_every_split(corpus, tmp_path):
    write_labels(corpus, rows())
    loaded = load_manifest(manifest(corpus, tmp_path))
    assert loaded.meta.classes == ("angry", "happy")  # sorted, not in the file's order
    assert len(loaded.clips) == 12
    splits = {}
    for clip in loaded.clips:
        assert splits.setdefault(clip.speaker, clip.split) == clip.split
    assert sorted(splits.values()).count("train") == 4
    for split in ("train", "development", "test"):
        assert {clip.label for clip in loaded.in_split(split)} == {"angry", "happy"}
    by_id = {clip.clip_id: clip for clip in loaded.clips}
    happy, angry = DEMO_CLIPS["happy"][0], DEMO_CLIPS["angry"][0]
    assert (by_id[happy].audio_path, by_id[happy].video_path) == (f"clips/{happy}.flv", f"clips/{happy}.flv")
    assert (by_id[angry].audio_path, by_id[angry].video_path) == (f"clips/{angry}.wav", f"clips/{angry}.flv")
    assert by_id[DEMO_CLIPS["angry"][1]].video_path == ""


def test_a_split_column_is_used_as_given(corpus, tmp_path):
    given = dict(zip(SPEAKERS, ("train", "train", "train", "dev", "test", "train"), strict=True))
    write_labels(corpus, rows(given), header=f"{HEADER},split")
    loaded = load_manifest(manifest(corpus, tmp_path))
    assert {clip.speaker: clip.split for clip in loaded.clips} == {**given, "dan": "development"}
    with pytest.raises(CorpusError, match="one partition; use --partition 1"):
        manifest(corpus, tmp_path, partition=2)


def test_a_missing_file_is_skipped_and_listed(corpus, tmp_path):
    write_labels(corpus, [*rows(), "", ",clips/gone.wav,angry,ann"])
    folder = manifest(corpus, tmp_path)
    assert len(load_manifest(folder).clips) == 12
    (skipped,) = load_skipped(folder)
    assert skipped.path == "clips/gone.wav" and "labels.csv line 15" in skipped.reason


def test_a_labels_file_elsewhere_is_read_and_its_changes_rebuild_the_manifest(corpus, tmp_path):
    labels = write_labels(tmp_path, rows(), name="elsewhere.csv")
    first, written = build_manifest(ManifestConfig(dataset="labelled", corpus_dir=str(corpus), labels=str(labels),
                                                   manifests_dir=tmp_path / "m"))
    assert written and len(corpus_clips("labelled", str(corpus), str(labels)).clips) == 12
    write_labels(tmp_path, [*rows(), ",clips/gone.wav,angry,ann"], name="elsewhere.csv")
    _, again = build_manifest(ManifestConfig(dataset="labelled", corpus_dir=str(corpus), labels=str(labels),
                                             manifests_dir=tmp_path / "m"))
    assert again


@pytest.mark.parametrize(("header", "change", "message"), [
    ("video,audio,label", None, r"labels.csv line 1: no column speaker"),
    ("video;audio;label;speaker", None, r"labels.csv line 1: .* not comma-separated"),
    (HEADER, (3, "clips/x.wav,happy,ann"), r"labels.csv line 5: 3 fields where the header has 4"),
    (HEADER, (0, ",,happy,ann"), r"labels.csv line 2: neither video nor audio"),
    (HEADER, (11, f",clips/{DEMO_CLIPS['happy'][0]}.wav,angry,fay"),
     rf"labels.csv lines 2 and 13: both give clip '{DEMO_CLIPS['happy'][0]}'"),
])
def test_bad_lines_are_refused_naming_the_file_and_line(corpus, tmp_path, header, change, message):
    lines = rows()
    if change:
        lines[change[0]] = change[1]
    write_labels(corpus, lines, header=header)
    with pytest.raises(CorpusError, match=message):
        manifest(corpus, tmp_path)


def test_a_file_that_is_not_utf8_is_refused(corpus, tmp_path):
    (corpus / "labels.csv").write_bytes("\n".join([HEADER, *rows()]).replace("ann", "Ånn").encode("latin-1"))
    with pytest.raises(CorpusError, match=r"labels.csv: not UTF-8 text .* save it as UTF-8"):
        manifest(corpus, tmp_path)


def test_a_speaker_in_two_given_splits_is_refused(corpus, tmp_path):
    given = dict(zip(SPEAKERS, ("train", "train", "train", "dev", "test", "train"), strict=True))
    lines = rows(given)
    lines[1] = lines[1].replace(",train", ",test")
    write_labels(corpus, lines, header=f"{HEADER},split")
    with pytest.raises(CorpusError, match=r"lines 2 and 3: speaker 'ann' is in both train and test"):
        manifest(corpus, tmp_path)


def test_a_class_missing_from_a_split_is_refused(corpus, tmp_path):
    given = dict(zip(SPEAKERS, ("train", "train", "train", "dev", "test", "train"), strict=True))
    lines = [line for line in rows(given) if ",angry,eve" not in line]
    write_labels(corpus, lines, header=f"{HEADER},split")
    with pytest.raises(CorpusError, match=r"labels.csv: no clip of class 'angry' in the test split"):
        manifest(corpus, tmp_path)
    write_labels(corpus, [line for line in rows() if ",angry," not in line or ",ann" in line])
    with pytest.raises(CorpusError, match=r"no clip of class 'angry' in (train|development|test).*more speakers"):
        manifest(corpus, tmp_path)


def test_the_stage_prints_one_line_and_labels_is_refused_elsewhere(corpus, tmp_path, capsys):
    assert manifest_main(["--dataset", "labelled", "--corpus-dir", str(corpus)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "labels.csv: labels file not found" in error
    with pytest.raises(CorpusError, match="--labels is for DATASET=labelled"):
        build_manifest(ManifestConfig(dataset="demo", corpus_dir=str(corpus), labels="x.csv"))


def test_a_manifest_of_the_old_columns_is_refused_and_rebuilt(corpus, tmp_path):
    """Before the extra column, each corpus field had a column of its own."""
    write_labels(corpus, rows())
    folder = manifest(corpus, tmp_path)
    meta = (folder / "manifest.yaml").read_text()
    (folder / "manifest.yaml").write_text(meta.replace("- extra\n", "- sentence\n- level\n- session\n- scenario\n"))
    with pytest.raises(CorpusError, match=r"an older manifest had a column per corpus field\); rebuild"):
        load_manifest(folder)
    rebuilt, written = build_manifest(ManifestConfig(dataset="labelled", corpus_dir=str(corpus),
                                                     manifests_dir=tmp_path / "manifests"))
    assert written and load_manifest(rebuilt).clips
