"""RAVDESS: its file names, and the reader on the demo corpus written in RAVDESS's layout."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from corpora import crema_d, ravdess
from corpora.demo.generate import DemoConfig, generate
from corpora.manifest import CorpusError, load_manifest
from corpora.ravdess import TrialName
from corpora.registry import ManifestConfig, build_manifest


@pytest.fixture(scope="module")
def miniature(tmp_path_factory) -> Path:
    """Three actors, the levelled sentence only: 16 speech trials each, the six CREMA-D emotions."""
    out = tmp_path_factory.mktemp("ravdess") / "corpus"
    generate(DemoConfig(out_dir=out, layout="ravdess", actors=3, sentences=1, seed=5, workers=2))
    return out


def test_names_parse_and_bad_ones_say_why():
    name = TrialName.parse("01-01-03-02-01-01-12")
    assert (name.modality, name.emotion, name.intensity, name.actor, name.sex) == ("01", "03", "02", "12", "Female")
    assert ravdess.file_name(name) == "Actor_12/01-01-03-02-01-01-12.mp4"
    assert ravdess.file_name(name.with_modality(ravdess.AUDIO_ONLY)) == "Actor_12/03-01-03-02-01-01-12.wav"
    with pytest.raises(ValueError, match="unknown emotion code '09'"):
        TrialName.parse("01-01-09-01-01-01-01")
    with pytest.raises(ValueError, match="seven two-digit codes"):
        TrialName.parse("01-01-03-01-01-01")


def test_the_miniature_reads_as_speech_trials_with_their_wav(miniature):
    corpus = ravdess.read_corpus(miniature)
    assert corpus.classes == ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")
    assert len(corpus.clips) == 48 and not corpus.skipped
    clip = next(c for c in corpus.clips if c.clip_id == "01-01-06-02-01-01-02")
    assert (clip.audio_path, clip.video_path) == ("Actor_02/03-01-06-02-01-01-02.wav",
                                                  "Actor_02/01-01-06-02-01-01-02.mp4")
    assert (clip.label, clip.speaker, clip.sex) == ("fear", "02", "Female")
    assert clip.extra == {"statement": "01", "intensity": "strong", "repetition": "01"}
    crema6 = ravdess.read_corpus(miniature, label_set="crema6")
    assert crema6.classes == crema_d.CLASSES  # CREMA-D's names and order: cross-corpus matching by name


def test_song_video_only_and_odd_files_are_left_out(miniature, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(miniature, root)
    actor = root / "Actor_01"
    trial = "01-01-03-01-01-01-01"
    shutil.copy(actor / f"{trial}.mp4", actor / "02-01-03-01-01-01-01.mp4")  # video only
    shutil.copy(actor / f"{trial}.mp4", actor / "01-02-03-01-01-01-01.mp4")  # song
    shutil.copy(actor / f"03-{trial[3:]}.wav", actor / "03-01-02-01-01-01-01.wav")  # calm, audio only
    (actor / f"03-{trial[3:]}.wav").unlink()  # the trial keeps its mp4's own audio track
    shutil.copy(actor / f"{trial}.mp4", actor / "01-01-03-01-01-01-02.mp4")  # actor 02's name in Actor_01
    (actor / "notes.mp4").write_text("")
    corpus = ravdess.read_corpus(root)
    by_id = {clip.clip_id: clip for clip in corpus.clips}
    assert len(corpus.clips) == 49
    assert (by_id[trial].audio_path, by_id[trial].video_path) == (f"Actor_01/{trial}.mp4", f"Actor_01/{trial}.mp4")
    assert by_id["03-01-02-01-01-01-01"].video_path == "" and by_id["03-01-02-01-01-01-01"].label == "calm"
    assert sorted(s.path for s in corpus.skipped) == ["Actor_01/01-01-03-01-01-01-02.mp4", "Actor_01/notes.mp4"]
    calm = next(c for c in ravdess.read_corpus(root, label_set="crema6").clips if c.intended == "calm")
    assert (calm.label, calm.excluded) == ("", ravdess.OUTSIDE_LABEL_SET)


def test_partitions_are_actor_independent_and_label_sets_are_checked(miniature, tmp_path):
    config = ManifestConfig(dataset="demo-ravdess", corpus_dir=str(miniature), manifests_dir=tmp_path,
                            label_set="crema6")
    folder, _ = build_manifest(config)
    assert folder.name == "intended-crema6-p1"
    loaded = load_manifest(folder)
    assert {clip.split for clip in loaded.clips} == {"train", "development", "test"}
    for speaker in {clip.speaker for clip in loaded.clips}:
        assert len({clip.split for clip in loaded.clips if clip.speaker == speaker}) == 1
    with pytest.raises(CorpusError, match="--label-set crema6: dataset crema has no such label set"):
        build_manifest(ManifestConfig(dataset="crema", label_set="crema6"))
    with pytest.raises(CorpusError, match="choose one of all, crema6"):
        build_manifest(ManifestConfig(dataset="ravdess", corpus_dir=str(miniature), label_set="six"))
