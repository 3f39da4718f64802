"""Generated speaker partitions, and the reference partition format (load, errors, round trip)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from corpora.manifest import ClipRecord
from corpora.partitions import (
    NOT_IN_FILE,
    PartitionError,
    apply_reference_partition,
    check_speaker_independent,
    load_reference_partition,
    save_reference_partition,
    speaker_partition,
    split_sizes,
)

CLASSES = ("angry", "sad", "neutral", "happy")
# The demo corpus's actors: 1001-1010, alternately male and female.
DEMO_SEXES = {str(1001 + i): ("Male", "Female")[i % 2] for i in range(10)}


def test_split_sizes_follow_the_reference_shares():
    assert split_sizes(91) == {"train": 63, "development": 14, "test": 14}
    assert split_sizes(10) == {"train": 6, "development": 2, "test": 2}
    assert split_sizes(3) == {"train": 1, "development": 1, "test": 1}
    with pytest.raises(PartitionError, match="at least 3 speakers"):
        split_sizes(2)


def test_demo_partitions_are_balanced_distinct_and_test_each_speaker_once():
    partitions = [speaker_partition(DEMO_SEXES, k) for k in range(1, 6)]
    for splits in partitions:
        assert Counter(splits.values()) == {"train": 6, "development": 2, "test": 2}
        for split in ("train", "development", "test"):
            assert {DEMO_SEXES[s] for s, v in splits.items() if v == split} == {"Male", "Female"}
    assert len({tuple(sorted(p.items())) for p in partitions}) == 5
    tested = Counter(s for p in partitions for s, v in p.items() if v == "test")
    assert tested == dict.fromkeys(DEMO_SEXES, 1)


def test_partitions_are_deterministic_whatever_the_input_order():
    reversed_sexes = dict(reversed(list(DEMO_SEXES.items())))
    assert speaker_partition(reversed_sexes, 3) == speaker_partition(DEMO_SEXES, 3)


def test_a_partition_that_would_repeat_an_earlier_one_stops():
    four = {"1": "Male", "2": "Female", "3": "Male", "4": "Female"}
    assert speaker_partition(four, 1) != speaker_partition(four, 2)
    with pytest.raises(PartitionError, match="partition 3 would repeat partition 1"):
        speaker_partition(four, 3)
    with pytest.raises(PartitionError, match="1-5"):
        speaker_partition(DEMO_SEXES, 6)


def test_a_speaker_in_two_splits_is_refused():
    clips = [ClipRecord("a", speaker="7", split="train"), ClipRecord("b", speaker="7", split="test")]
    with pytest.raises(PartitionError, match="speaker 7 is in both train and test"):
        check_speaker_independent(clips, "here")


def clips_of(speaker: str, sex: str, split: str) -> list[ClipRecord]:
    return [ClipRecord(f"{speaker}_a", speaker=speaker, sex=sex, label="sad", soft_label=(0.25, 0.5, 0.25, 0.0),
                       split=split),
            # a distributional tie: in a split, no hard label
            ClipRecord(f"{speaker}_b", speaker=speaker, sex=sex, soft_label=(0.5, 0.5, 0.0, 0.0), split=split),
            ClipRecord(f"{speaker}_c", speaker=speaker, sex=sex, label="happy", split=split),  # intended: no soft label
            ClipRecord(f"{speaker}_d", speaker=speaker, sex=sex, excluded="no majority")]


def test_saved_partition_loads_back_with_the_same_clips_labels_and_splits(tmp_path):
    clips = clips_of("1", "Male", "train") + clips_of("2", "Female", "development") + clips_of("3", "Male", "test")
    path = tmp_path / "partition.csv"
    assert save_reference_partition(path, clips, CLASSES) == 9
    loaded = apply_reference_partition([ClipRecord(c.clip_id, speaker=c.speaker, sex=c.sex) for c in clips],
                                       load_reference_partition(path, CLASSES), path)
    for original, back in zip(clips, loaded):
        assert (back.label, back.split) == (original.label, original.split)
        if original.split:
            assert back.soft_label == (original.soft_label or (0.0, 0.0, 0.0, 1.0))
        else:
            assert back.excluded == NOT_IN_FILE


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_partition_file_errors_name_the_file_and_the_problem(tmp_path):
    missing_column = write(tmp_path / "a.csv", "FileName,angry,sad,neutral,SpkrID,Gender,Split_Set\n")
    with pytest.raises(PartitionError, match=r"a.csv: no column happy"):
        load_reference_partition(missing_column, CLASSES)
    bad_split = write(tmp_path / "b.csv", "FileName,angry,sad,neutral,happy,SpkrID,Gender,Split_Set\n"
                                          "x.wav,1,0,0,0,1,Male,Validation\n")
    with pytest.raises(PartitionError, match=r"b.csv line 2: Split_Set 'Validation'"):
        load_reference_partition(bad_split, CLASSES)
    foreign = write(tmp_path / "c.csv", "FileName,angry,sad,neutral,happy,SpkrID,Gender,Split_Set\n"
                                        "y.wav,1,0,0,0,1,Male,Train\n")
    with pytest.raises(PartitionError, match=r"c.csv: 1 of its clips are not in the corpus folder \(e.g. y\)"):
        apply_reference_partition([ClipRecord("x", speaker="1")], load_reference_partition(foreign, CLASSES), foreign)
    with pytest.raises(PartitionError, match="not found"):
        load_reference_partition(tmp_path / "absent.csv", CLASSES)
