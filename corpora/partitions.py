"""Speaker-independent partitions: generated, or loaded from (and saved to) the reference format.

Generated partitions (``speaker_partition``), the rule for corpora split by speaker (CREMA-D, the
demo corpus):

- The shares of the published CREMA-D partitions, 63/14/14 of 91 actors in train/development/
  test, scaled to the corpus: development and test each get round(n * 14 / 91) speakers (at
  least one), train the rest. 91 actors give 63/14/14, the 10-actor demo corpus 6/2/2.
- Balanced by sex: each held-out split takes from each sex its proportional share of the split
  (largest remainder; a tie goes to the sex that has fewer speakers in the held-out splits so
  far, then by name). CREMA-D (48 male, 43 female) gets 7 + 7 in development and in test.
- Partition k of 1-5: each sex's speakers are put in one fixed order (sorted ids, then shuffled
  with a fixed seed); test is the block starting at (k - 1) * (test speakers of that sex),
  development the block right after it, both wrapping around; train is everyone else. Test
  blocks of different partitions do not overlap while the sex has enough speakers, so each of
  the 10 demo speakers is tested in exactly one of the five partitions. A corpus too small for
  five different partitions stops at the first repeat, with a message.
- Deterministic: the same speakers and sexes give the same partition on any machine.

The reference format is that of the partitions published with the VAVL code (and used by
AuxFormer): ``FileName,<one column per class>,SpkrID,Gender,Split_Set``, ``FileName`` with a
``.wav`` suffix, class scores whose largest is the label, ``Split_Set`` one of Train,
Development, Test. Loading one keeps exactly its clips, labels, scores and splits; a clip whose
top score is shared gets no label (as the plurality rule); clips the file does not list are
excluded. Saving writes each clip in a split with its soft label (one-hot for the ``intended``
rule), so that loading it back gives the same clips, labels and splits.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from corpora.manifest import SOFT_LABEL_DECIMALS, ClipRecord, CorpusError, speaker_in_two_splits

PARTITIONS = (1, 2, 3, 4, 5)
# Published CREMA-D partitions: actors in train, development, test.
REFERENCE_SHARES = {"train": 63, "development": 14, "test": 14}
REFERENCE_SPEAKERS = sum(REFERENCE_SHARES.values())
# Fixes each sex's speaker order; changing it changes every generated partition.
ORDER_SEED = 20220522
REFERENCE_SPLIT_NAMES = {"train": "Train", "development": "Development", "test": "Test"}
NOT_IN_FILE = "not in partition file"


class PartitionError(CorpusError):
    """A partition that cannot be made or is not speaker-independent."""


def check_partition_index(index: int) -> None:
    if index not in PARTITIONS:
        raise PartitionError(f"--partition must be one of 1-5 (as AuxFormer's five partitions), got {index}")


def split_sizes(speakers: int) -> dict[str, int]:
    """Speakers per split, in the proportions of the published CREMA-D partitions."""
    held_out = max(1, round(speakers * REFERENCE_SHARES["test"] / REFERENCE_SPEAKERS))
    if speakers - 2 * held_out < 1:
        raise PartitionError(f"a speaker-independent train/development/test partition needs at least 3 speakers; "
                             f"the corpus has {speakers}")
    return {"train": speakers - 2 * held_out, "development": held_out, "test": held_out}


def _allocate(total: int, population: dict[str, int], room: dict[str, int], given: dict[str, int]) -> dict[str, int]:
    """Share ``total`` places among sexes in proportion to ``population``, within ``room``."""
    everyone = sum(population.values())
    quota = {sex: total * n / everyone for sex, n in population.items()}
    share = {sex: min(int(quota[sex]), room[sex]) for sex in population}
    while sum(share.values()) < total:
        open_sexes = [sex for sex in population if share[sex] < room[sex]]
        # Largest remainder first; on a tie the sex with fewer places so far, then by name.
        sex = min(open_sexes, key=lambda s: (-(quota[s] - share[s]), given[s] + share[s], s))
        share[sex] += 1
    return share


def _speaker_order(speakers: list[str]) -> list[str]:
    ordered = sorted(speakers, key=lambda s: (len(s), s))
    permutation = np.random.default_rng(ORDER_SEED).permutation(len(ordered))
    return [ordered[i] for i in permutation]


def _partition(sexes: dict[str, str], index: int) -> dict[str, str]:
    by_sex: dict[str, list[str]] = {}
    for speaker, sex in sexes.items():
        by_sex.setdefault(sex, []).append(speaker)
    population = {sex: len(members) for sex, members in by_sex.items()}
    sizes = split_sizes(len(sexes))
    test = _allocate(sizes["test"], population, population, dict.fromkeys(population, 0))
    room = {sex: population[sex] - test[sex] for sex in population}
    development = _allocate(sizes["development"], population, room, test)
    splits = {}
    for sex, members in by_sex.items():
        order = _speaker_order(members)
        start = (index - 1) * test[sex]
        rotated = [order[(start + i) % len(order)] for i in range(len(order))]
        for position, speaker in enumerate(rotated):
            if position < test[sex]:
                splits[speaker] = "test"
            elif position < test[sex] + development[sex]:
                splits[speaker] = "development"
            else:
                splits[speaker] = "train"
    return splits


def speaker_partition(sexes: dict[str, str], index: int) -> dict[str, str]:
    """Speaker -> split for partition ``index`` (1-5); ``sexes`` maps every speaker to its sex."""
    check_partition_index(index)
    chosen = _partition(sexes, index)
    for earlier in range(1, index):
        if _partition(sexes, earlier) == chosen:
            raise PartitionError(f"with {len(sexes)} speakers partition {index} would repeat partition {earlier}; "
                                 f"use --partition {earlier} or fewer")
    return chosen


def assign_splits(clips: list[ClipRecord], speaker_splits: dict[str, str]) -> list[ClipRecord]:
    """Put every labelled, not excluded clip in its speaker's split."""
    return [replace(clip, split=speaker_splits[clip.speaker])
            if not clip.excluded and (clip.label or clip.soft_label) else clip
            for clip in clips]


def check_speaker_independent(clips: list[ClipRecord], source: str) -> None:
    mixed = speaker_in_two_splits(clips)
    if mixed:
        clip, first = mixed
        raise PartitionError(f"{source}: speaker {clip.speaker} is in both {first} and {clip.split} "
                             f"(clip {clip.clip_id}); a partition must keep each speaker in one split")


@dataclass(frozen=True)
class ReferenceRow:
    label: str
    soft_label: tuple[float, ...]
    split: str


def _unique_top(scores: tuple[float, ...], classes: tuple[str, ...]) -> str:
    top = max(scores)
    return classes[scores.index(top)] if scores.count(top) == 1 else ""


def load_reference_partition(path: Path, classes: tuple[str, ...]) -> dict[str, ReferenceRow]:
    """Clip id -> label, scores and split, from a partition file in the reference format."""
    if not path.is_file():
        raise PartitionError(f"{path}: partition file not found; give the path of a CSV in the reference format")
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        header = reader.fieldnames or []
        missing = [c for c in ("FileName", "Split_Set", *classes) if c not in header]
        if missing:
            raise PartitionError(f"{path}: no column {', '.join(missing)}; a partition file needs "
                                 f"FileName,{','.join(classes)},SpkrID,Gender,Split_Set (the reference format)")
        rows = {}
        for line, row in enumerate(reader, start=2):
            clip_id = row["FileName"].removesuffix(".wav")
            try:
                scores = tuple(float(row[c]) for c in classes)
            except (TypeError, ValueError):
                raise PartitionError(f"{path} line {line}: class scores of {clip_id} are not numbers") from None
            split = {v: k for k, v in REFERENCE_SPLIT_NAMES.items()}.get((row["Split_Set"] or "").strip().title())
            if split is None:
                raise PartitionError(f"{path} line {line}: Split_Set {row['Split_Set']!r} "
                                     "is not Train, Development or Test")
            if clip_id in rows:
                raise PartitionError(f"{path} line {line}: {clip_id} is listed twice; keep one row per clip")
            rows[clip_id] = ReferenceRow(_unique_top(scores, classes), scores, split)
    return rows


def apply_reference_partition(clips: list[ClipRecord], reference: dict[str, ReferenceRow],
                              path: Path) -> list[ClipRecord]:
    """Labels and splits exactly as the file gives them; clips it does not list are excluded."""
    known = {clip.clip_id for clip in clips}
    absent = sorted(set(reference) - known)
    if absent:
        raise PartitionError(f"{path}: {len(absent)} of its clips are not in the corpus folder (e.g. {absent[0]}); "
                             "the corpus is incomplete or the file belongs to another corpus")
    applied = []
    for clip in clips:
        row = reference.get(clip.clip_id)
        if row is None:
            applied.append(replace(clip, label="", soft_label=(), split="", excluded=NOT_IN_FILE))
        else:
            applied.append(replace(clip, label=row.label, soft_label=row.soft_label, split=row.split, excluded=""))
    check_speaker_independent(applied, str(path))
    return applied


def save_reference_partition(path: Path, clips: list[ClipRecord], classes: tuple[str, ...]) -> int:
    """Write the clips that are in a split in the reference format; returns how many."""
    rows = 0
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["FileName", *classes, "SpkrID", "Gender", "Split_Set"])
        for clip in clips:
            if not clip.split:
                continue
            scores = clip.soft_label or tuple(float(c == clip.label) for c in classes)
            writer.writerow([f"{clip.clip_id}.wav", *(repr(round(s, SOFT_LABEL_DECIMALS)) for s in scores),
                             clip.speaker, clip.sex, REFERENCE_SPLIT_NAMES[clip.split]])
            rows += 1
    return rows
