"""The CREMA-D reader on the real metadata: all 7,442 clip names (as empty media files), the real
vote tables, the real demographics, and the five published reference partitions.

Every expected number is computed here from the CSV files with a few lines of counting, not by
the code under test; the README figures (420 and 1,529 clips without a label) are checked too.
"""
from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from corpora import crema_d
from corpora.manifest import load_manifest
from corpora.registry import PARTITION_CSV, ManifestConfig, build_manifest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "crema-d"
REFERENCE_DIR = SHARED / "reference-partitions-M"
pytestmark = pytest.mark.skipif(not (SHARED / "tabulatedVotes.csv").is_file(),
                                reason="the real CREMA-D metadata (../shared/corpora/crema-d) is not on this machine")
VOTE_COLUMNS = {"angry": "A", "sad": "S", "disgust": "D", "fear": "F", "neutral": "N", "happy": "H"}
RATING_TYPE = {"voice": "1", "face": "2", "audiovisual": "3"}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crema-d")
    (root / "AudioWAV").mkdir()
    (root / "VideoFlash").mkdir()
    (root / "processedResults").mkdir()
    for row in read_csv(SHARED / "SentenceFilenames.csv"):
        (root / "AudioWAV" / f"{row['Filename']}.wav").touch()
        (root / "VideoFlash" / f"{row['Filename']}.flv").touch()
    for name in ("tabulatedVotes.csv", "summaryTable.csv"):
        shutil.copy(SHARED / name, root / "processedResults" / name)
    for name in ("VideoDemographics.csv", "SentenceFilenames.csv"):
        shutil.copy(SHARED / name, root / name)
    return root


@pytest.fixture(scope="module")
def votes() -> dict[str, dict[str, dict[str, int]]]:
    """Rating modality -> clip -> class -> votes, straight from tabulatedVotes.csv."""
    table: dict[str, dict[str, dict[str, int]]] = {modality: {} for modality in RATING_TYPE}
    type_of = {v: k for k, v in RATING_TYPE.items()}
    for row in read_csv(SHARED / "tabulatedVotes.csv"):
        modality = type_of[row[""][0]]
        table[modality][row["fileName"]] = {c: int(row[letter]) for c, letter in VOTE_COLUMNS.items()}
    return table


def expected_labels(clip_votes: dict[str, dict[str, int]], rule: str) -> dict[str, str]:
    """Clip -> label ('' when the rule gives none), by the rule's plain definition."""
    labels = {}
    for clip, counts in clip_votes.items():
        top = max(counts.values())
        winners = [c for c, n in counts.items() if n == top]
        if rule == "majority":
            labels[clip] = winners[0] if top > sum(counts.values()) / 2 else ""
        else:
            labels[clip] = winners[0] if len(winners) == 1 else ""
    return labels


def test_clips_speakers_and_sexes(corpus_root):
    corpus = crema_d.read_corpus(corpus_root, "intended")
    demographics = read_csv(SHARED / "VideoDemographics.csv")
    sex_of = {row["ActorID"]: row["Sex"] for row in demographics}
    assert len(corpus.clips) == len(read_csv(SHARED / "SentenceFilenames.csv")) == 7442
    assert corpus.skipped == []
    speakers = {clip.speaker: clip.sex for clip in corpus.clips}
    assert speakers == sex_of
    assert Counter(speakers.values()) == Counter(sex_of.values()) == {"Male": 48, "Female": 43}
    assert all(clip.audio_path and clip.video_path for clip in corpus.clips)


def test_intended_labels(corpus_root):
    corpus = crema_d.read_corpus(corpus_root, "intended")
    code_counts = Counter(row["Filename"].split("_")[2] for row in read_csv(SHARED / "SentenceFilenames.csv"))
    class_of_code = {"ANG": "angry", "SAD": "sad", "DIS": "disgust", "FEA": "fear", "NEU": "neutral", "HAP": "happy"}
    expected = {class_of_code[code]: n for code, n in code_counts.items()}
    assert Counter(clip.label for clip in corpus.clips) == expected
    assert expected == {"angry": 1271, "sad": 1271, "disgust": 1271, "fear": 1271, "happy": 1271, "neutral": 1087}
    assert not any(clip.excluded for clip in corpus.clips)


@pytest.mark.parametrize("ratings", ["audiovisual", "voice", "face"])
@pytest.mark.parametrize("rule", ["plurality", "majority", "distributional"])
def test_perceived_labels_match_an_independent_count(corpus_root, votes, rule, ratings):
    corpus = crema_d.read_corpus(corpus_root, rule, ratings)
    expected = expected_labels(votes[ratings], rule)
    got = {clip.clip_id: clip.label for clip in corpus.clips}
    assert got == expected
    assert Counter(got.values()) == Counter(expected.values())
    excluded = {clip.clip_id for clip in corpus.clips if clip.excluded}
    if rule == "distributional":
        assert excluded == set()
        for clip in corpus.clips[:50]:
            counts = votes[ratings][clip.clip_id]
            total = sum(counts.values())
            assert clip.soft_label == pytest.approx([counts[c] / total for c in crema_d.CLASSES], abs=1e-6)
    else:
        assert excluded == {clip for clip, label in expected.items() if not label}


@pytest.mark.parametrize(("rule", "unlabelled"), [("plurality", 420), ("majority", 1529)])
def test_readme_counts_of_unlabelled_clips(corpus_root, rule, unlabelled):
    corpus = crema_d.read_corpus(corpus_root, rule, "audiovisual")
    assert sum(1 for clip in corpus.clips if clip.excluded) == unlabelled


def test_five_partitions_are_speaker_independent_and_cover_every_speaker(corpus_root):
    corpus = crema_d.read_corpus(corpus_root, "intended")
    sex_of = {clip.speaker: clip.sex for clip in corpus.clips}
    partitions = [crema_d.partition(corpus.clips, k) for k in range(1, 6)]
    for splits in partitions:
        assert set(splits) == set(sex_of)  # every speaker, each in exactly one split (a dict)
        assert Counter(splits.values()) == {"train": 63, "development": 14, "test": 14}
        for held_out in ("development", "test"):
            assert Counter(sex_of[s] for s, split in splits.items() if split == held_out) == {"Male": 7, "Female": 7}
    assert len({tuple(sorted(p.items())) for p in partitions}) == 5
    test_sets = [{s for s, split in p.items() if split == "test"} for p in partitions]
    assert sum(len(t) for t in test_sets) == len(set().union(*test_sets)) == 70


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_reference_partition_loads_exactly(corpus_root, tmp_path, k):
    path = REFERENCE_DIR / f"label_consensus_{k}.csv"
    rows = read_csv(path)
    classes = ["angry", "sad", "disgust", "fear", "neutral", "happy"]
    expected = {}
    for row in rows:
        scores = [float(row[c]) for c in classes]
        expected[row["FileName"][: -len(".wav")]] = (classes[scores.index(max(scores))], row["Split_Set"].lower())
    config = ManifestConfig(dataset="crema", corpus_dir=str(corpus_root), partition_file=str(path),
                            manifests_dir=tmp_path)
    folder, _ = build_manifest(config)
    manifest = load_manifest(folder)
    got = {clip.clip_id: (clip.label, clip.split) for clip in manifest.clips if clip.split}
    assert len(rows) == 5820
    assert got == expected
    assert len(manifest.clips) - len(got) == 7442 - 5820


def test_saved_partition_loads_back_identically(corpus_root, tmp_path):
    ours, _ = build_manifest(ManifestConfig(dataset="crema", corpus_dir=str(corpus_root), label_rule="majority",
                                            partition=2, manifests_dir=tmp_path))
    loaded, _ = build_manifest(ManifestConfig(dataset="crema", corpus_dir=str(corpus_root),
                                              partition_file=str(ours / PARTITION_CSV), manifests_dir=tmp_path))
    def in_split(folder):
        return {c.clip_id: (c.label, c.soft_label, c.split, c.speaker, c.sex)
                for c in load_manifest(folder).clips if c.split}
    original = in_split(ours)
    assert len(original) == 7442 - 1529
    assert in_split(loaded) == original
