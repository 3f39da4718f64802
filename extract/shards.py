"""Feature shards: HDF5 files of whole clips, written atomically, and the index loaders read.

A shard holds a batch of clips with their per-frame arrays concatenated (one dataset each, so a
clip is one contiguous slice, not a handful of tiny datasets) and a ``clips`` table of offsets:

    audio       (audio frames, dim) float32         audio features (the audio encoder's: log-mel, eGeMAPS...)
    embedding   (video frames, dim) float32         face embedding; zeros where no valid face
    valid       (video frames,) bool                a usable face on that frame
    boxes       (video frames, 4) float32           face box x, y, w, h in pixels of the upright
                                                    picture (as a player shows it); NaN if none
    timestamps  (video frames,) float64             frame time in seconds
    clips/...   one row per clip: id, offsets and lengths into the arrays above, why a modality
                is missing, duration, fps, the rotation that turned the stored frames upright
                (counter-clockwise degrees), the most faces one detection saw, and a CRC-32 of
                the clip's arrays
    attrs       layout_version, audio_rate (audio frames a second)

Layout 3 named the audio dataset ``audio`` (layout 2: ``mel``, whatever encoder made it) and added
each clip's rotation and faces seen; a shard of layout 2 is refused with the command that rewrites it.

A shard is written whole under a temporary name and renamed into place, so readers (and a rerun
after ``kill -9``) see only complete shards; a run loses at most the clips it had not yet
flushed. The checksum is written with the arrays, and every read checks it: a damaged shard
(a flipped bit, a truncated file), or one holding NaN or infinite features, is reported by name,
never trained on.

``index.csv`` lists every clip of every shard with what a loader needs without opening the
shards or reading extraction.yaml (INDEX_COLUMNS: frame counts, feature sizes, frame rates and
the rotation and the faces seen); it is rebuilt from the shards at the end of each run (and by ``make
verify-features``).
"""
from __future__ import annotations

import csv
import math
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from common import files
from common.errors import ProjectError
from common.locks import exclusive_lock

SHARD_SUFFIX = ".h5"
INDEX_FILE = "index.csv"
INDEX_LOCK = "index.lock"
LAYOUT_VERSION = 3
EXTRACTION_ATTR = "extraction"
INDEX_COLUMNS = ("clip_id", "shard", "row", "audio_frames", "video_frames", "has_audio", "has_video",
                 "audio_dim", "video_dim", "audio_rate", "video_rate", "rotation", "faces")
NUMERIC_COLUMNS = INDEX_COLUMNS[2:]


class FeatureError(ProjectError):
    """An extraction folder, shard or index that cannot be read or used; the message names the file."""


@dataclass
class ClipFeatures:
    clip_id: str
    audio: np.ndarray  # (audio frames, audio dim), the audio encoder's; empty when the clip has no audio
    embedding: np.ndarray  # (video frames, dim); empty when the clip has no video
    valid: np.ndarray
    boxes: np.ndarray
    timestamps: np.ndarray
    duration: float
    fps: float
    audio_note: str = ""  # why there is no audio, or that it came from the video's track; else empty
    video_note: str = ""  # why there is no video (or no face), empty when there is
    rotation: int = 0  # counter-clockwise degrees the stored frames were turned to be upright
    faces: int = 0  # the most faces one detection saw (one of them is followed)

    @property
    def has_audio(self) -> bool:
        return len(self.audio) > 0

    @property
    def has_video(self) -> bool:
        return bool(self.valid.any()) if len(self.valid) else False


@dataclass(frozen=True)
class FeatureDims:
    audio_dim: int  # audio features a frame
    video_dim: int  # face embedding size
    audio_rate: float  # audio frames a second


@dataclass
class ShardWriter:
    """Buffers clips and writes them as shards of ``clips_per_shard`` (one writer per process)."""

    folder: Path
    prefix: str
    clips_per_shard: int
    audio_dim: int
    embedding_dim: int
    audio_rate: float
    extraction: str  # the extraction's folder name (extract.spec), so a shard copied into another one is known
    pending: list[ClipFeatures] = field(default_factory=list)
    written: int = 0

    def add(self, clip: ClipFeatures) -> None:
        self.pending.append(clip)
        if len(self.pending) >= self.clips_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        path = self.folder / f"{self.prefix}-{uuid.uuid4().hex[:8]}{SHARD_SUFFIX}"
        with files.atomic_path(path) as partial, h5py.File(partial, "w") as h5:
            _write_shard(h5, self.pending, self.audio_dim, self.embedding_dim, self.audio_rate)
            h5.attrs[EXTRACTION_ATTR] = self.extraction
        self.written += len(self.pending)
        self.pending = []


ARRAY_NAMES = ("audio", "embedding", "valid", "boxes", "timestamps")


def _typed(clip: ClipFeatures, audio_dim: int, dim: int) -> dict[str, np.ndarray]:
    """A clip's arrays as they are stored."""
    return {"audio": np.asarray(clip.audio, np.float32).reshape(-1, audio_dim),
            "embedding": np.asarray(clip.embedding, np.float32).reshape(-1, dim),
            "valid": np.asarray(clip.valid, bool).reshape(-1),
            "boxes": np.asarray(clip.boxes, np.float32).reshape(-1, 4),
            "timestamps": np.asarray(clip.timestamps, np.float64).reshape(-1)}


def checksum(arrays: dict[str, np.ndarray]) -> int:
    """CRC-32 of a clip's stored arrays, in ARRAY_NAMES order."""
    value = 0
    for name in ARRAY_NAMES:
        value = zlib.crc32(np.ascontiguousarray(arrays[name]).tobytes(), value)
    return value


def _write_shard(h5: h5py.File, clips: list[ClipFeatures], audio_dim: int, dim: int, audio_rate: float) -> None:
    h5.attrs["layout_version"] = LAYOUT_VERSION
    h5.attrs["audio_rate"] = audio_rate
    typed = [_typed(clip, audio_dim, dim) for clip in clips]
    for name in ARRAY_NAMES:
        h5.create_dataset(name, data=np.concatenate([arrays[name] for arrays in typed]))
    audio_frames = np.array([len(c.audio) for c in clips])
    video_frames = np.array([len(c.valid) for c in clips])
    table = h5.create_group("clips")
    text = h5py.string_dtype()
    table.create_dataset("id", data=[c.clip_id for c in clips], dtype=text)
    table.create_dataset("audio_note", data=[c.audio_note for c in clips], dtype=text)
    table.create_dataset("video_note", data=[c.video_note for c in clips], dtype=text)
    table.create_dataset("audio_offset", data=np.concatenate([[0], np.cumsum(audio_frames)[:-1]]))
    table.create_dataset("audio_frames", data=audio_frames)
    table.create_dataset("video_offset", data=np.concatenate([[0], np.cumsum(video_frames)[:-1]]))
    table.create_dataset("video_frames", data=video_frames)
    table.create_dataset("duration", data=[c.duration for c in clips])
    table.create_dataset("fps", data=[c.fps for c in clips])
    table.create_dataset("rotation", data=np.array([c.rotation for c in clips], dtype=np.int16))
    table.create_dataset("faces", data=np.array([c.faces for c in clips], dtype=np.int16))
    table.create_dataset("crc32", data=np.array([checksum(t) for t in typed], dtype=np.uint32))


def _clip_from(h5: h5py.File, row: int, clip_id: str, path: Path) -> ClipFeatures:
    """Clip ``row`` of an open shard, checked against its checksum; FeatureError naming the shard otherwise."""
    try:
        table = h5["clips"]
        a0, na = int(table["audio_offset"][row]), int(table["audio_frames"][row])
        v0, nv = int(table["video_offset"][row]), int(table["video_frames"][row])
        stored_id = table["id"][row].decode()
        arrays = {name: h5[name][a0:a0 + na] if name == "audio" else h5[name][v0:v0 + nv] for name in ARRAY_NAMES}
        expected = int(table["crc32"][row])
    except (OSError, KeyError) as error:
        raise FeatureError(f"{path}: clip {clip_id} cannot be read ({error}): the shard is damaged; delete it and "
                           "rerun make features (its clips are extracted again)") from None
    if stored_id != clip_id:
        raise FeatureError(f"{path}: row {row} holds clip {stored_id}, not {clip_id}: the index does not match the "
                           "shards; run make verify-features, which rebuilds it from the shards")
    if checksum(arrays) != expected:
        raise FeatureError(f"{path}: clip {clip_id} does not match its checksum: the shard is damaged; delete it "
                           "and rerun make features (its clips are extracted again)")
    if not (np.isfinite(arrays["audio"]).all() and np.isfinite(arrays["embedding"]).all()):
        raise FeatureError(f"{path}: clip {clip_id} has non-finite features (NaN or infinity); delete the shard and "
                           "rerun make features (its clips are extracted again)")
    return ClipFeatures(clip_id=clip_id, **arrays, duration=float(table["duration"][row]), fps=float(table["fps"][row]),
                        audio_note=table["audio_note"][row].decode(), video_note=table["video_note"][row].decode(),
                        rotation=int(table["rotation"][row]), faces=int(table["faces"][row]))


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SHARD_SUFFIX}"))


def remove_partial_shards(folder: Path, prefix: str) -> int:
    """Delete what an interrupted run of the part ``prefix`` left half-written; returns how many."""
    leftovers = list(folder.glob(f"{prefix}-*{SHARD_SUFFIX}.*{files.PARTIAL_SUFFIX}"))
    for leftover in leftovers:
        leftover.unlink()
    return len(leftovers)


def open_shard(path: Path) -> h5py.File:
    """The shard opened for reading; FeatureError naming it when it is damaged or of another layout."""
    fix = "delete it and rerun make features (its clips are extracted again), or redo the extraction with FORCE=1"
    try:
        h5 = h5py.File(path, "r")
        version = h5.attrs.get("layout_version")
    except OSError as error:
        raise FeatureError(f"{path}: damaged feature shard ({error}); {fix}") from None
    if version == 2:
        h5.close()
        raise FeatureError(f"{path}: a shard of layout 2, which named the audio features 'mel'; this version reads "
                           f"layout {LAYOUT_VERSION}: make features FORCE=1 extracts them again")
    if version != LAYOUT_VERSION:
        h5.close()
        raise FeatureError(f"{path}: a shard of layout {version}, this code reads {LAYOUT_VERSION} (damaged, or "
                           f"written by another version); {fix}")
    return h5


@contextmanager
def reading(path: Path) -> Iterator[h5py.File]:
    """An open shard whose read errors (a truncated file, a missing dataset) become a FeatureError naming it."""
    with open_shard(path) as h5:
        try:
            yield h5
        except (OSError, KeyError, ValueError) as error:
            raise FeatureError(f"{path}: damaged feature shard ({type(error).__name__}: {error}); delete it and "
                               "rerun make features (its clips are extracted again), or redo the extraction with "
                               "FORCE=1") from None


def clip_ids_in(path: Path) -> list[str]:
    with reading(path) as h5:
        return [s.decode() for s in h5["clips/id"][:]]


_INDEX_TABLE_COLUMNS = ("id", "video_offset", "video_frames", "audio_frames", "fps", "rotation", "faces")


def _index_rows(path: Path) -> list[dict]:
    with reading(path) as h5:
        # Each column read whole, once: a read per row and column took 0.1 s for the demo's 96 clips.
        table = {name: h5["clips"][name][:] for name in _INDEX_TABLE_COLUMNS}
        valid = h5["valid"][:]
        audio_dim, video_dim = h5["audio"].shape[1], h5["embedding"].shape[1]
        audio_rate = float(h5.attrs["audio_rate"])
    rows = []
    for row, clip_id in enumerate(s.decode() for s in table["id"]):
        start, frames = int(table["video_offset"][row]), int(table["video_frames"][row])
        audio_frames = int(table["audio_frames"][row])
        rows.append({"clip_id": clip_id, "shard": path.name, "row": row, "audio_frames": audio_frames,
                     "video_frames": frames, "has_audio": int(audio_frames > 0),
                     "has_video": int(bool(valid[start:start + frames].any())),
                     "audio_dim": audio_dim, "video_dim": video_dim,
                     "audio_rate": audio_rate, "video_rate": float(table["fps"][row]),
                     "rotation": int(table["rotation"][row]), "faces": int(table["faces"][row])})
    return rows


def build_index(folder: Path) -> list[dict]:
    """Rows of index.csv from every complete shard, written atomically; returns the rows.

    Parts of an extraction that finish at the same time take turns (a lock), so the last one to
    finish lists every shard the others renamed into place before it."""
    with exclusive_lock(folder / INDEX_LOCK, "building the index", wait=True):
        files.remove_partials(folder / INDEX_FILE)
        rows = [row for path in shard_files(folder) for row in _index_rows(path)]
        files.write_csv(folder / INDEX_FILE, INDEX_COLUMNS, rows)
    return rows


def read_shard(path: Path) -> list[ClipFeatures]:
    """Every clip of one shard, checked against its checksum."""
    with reading(path) as h5:
        return [_clip_from(h5, row, s.decode(), path) for row, s in enumerate(h5["clips/id"][:])]


def drop_duplicate_clips(folder: Path, prefix: str) -> int:
    """Keep one copy of each clip among the part ``prefix``'s shards (two runs of one part at once
    each wrote every clip): a shard holding only copies is deleted, one holding some is rewritten
    without them. Returns the copies dropped."""
    seen: set[str] = set()
    dropped = 0
    for path in sorted(folder.glob(f"{prefix}-*{SHARD_SUFFIX}"), key=lambda p: (p.stat().st_mtime_ns, p.name)):
        ids = clip_ids_in(path)
        copies = seen & set(ids)
        seen |= set(ids)
        if not copies:
            continue
        dropped += len(copies)
        kept = [clip for clip in read_shard(path) if clip.clip_id not in copies] if len(copies) < len(ids) else []
        if kept:
            with reading(path) as h5:
                audio_dim, dim, rate = h5["audio"].shape[1], h5["embedding"].shape[1], float(h5.attrs["audio_rate"])
                extraction = str(h5.attrs.get(EXTRACTION_ATTR, ""))
            writer = ShardWriter(folder, prefix, len(kept), audio_dim, dim, rate, extraction)
            for clip in kept:
                writer.add(clip)
        path.unlink()
    return dropped


def _check_numbers(row: dict, index: Path, line: int) -> None:
    for name in NUMERIC_COLUMNS:
        try:
            number = float(row[name]) if name.endswith("_rate") else int(row[name])
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise FeatureError(f"{index} line {line}: {name} {row[name]!r} is no count or rate: the index is "
                               "damaged; run make verify-features, which rebuilds it from the shards")


def foreign_shards(folder: Path, names: list[str], extraction: str) -> list[str]:
    """A line for each of the shards ``names`` of ``folder`` written by another extraction than
    ``extraction`` (a folder name; '' checks nothing). Shards written before they recorded theirs pass."""
    problems = []
    for name in names if extraction else []:
        try:
            with reading(folder / name) as h5:
                recorded = str(h5.attrs.get(EXTRACTION_ATTR, ""))
        except FeatureError:  # a damaged shard is reported where its clips are read, with them named
            continue
        if recorded and recorded != extraction:
            problems.append(f"{folder / name}: a shard of the extraction {recorded}, copied into {extraction}; "
                            "delete it and rerun make features (its clips are extracted again)")
    return problems


class FeatureStore:
    """Reads clips from an extraction folder through its index; shards are opened on first use.
    ``extraction``: the folder's extraction name (its record's ``folder``); a shard of another is refused."""

    def __init__(self, folder: Path, extraction: str = ""):
        self.folder = Path(folder)
        index = self.folder / INDEX_FILE
        if not index.is_file():
            raise FeatureError(f"{index} not found: run make verify-features (it rebuilds the index from the "
                               "shards), or make features for this dataset")
        with open(index, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and set(INDEX_COLUMNS) - set(rows[0]):
            raise FeatureError(f"{index} was written by another version of the extraction; run "
                               "make verify-features (it rebuilds the index) or make features FORCE=1")
        if any(None in row.values() or None in row for row in rows):
            raise FeatureError(f"{index} is damaged (a row of the wrong length); run make verify-features, which "
                               "rebuilds it from the shards")
        for line, row in enumerate(rows, start=2):
            _check_numbers(row, index, line)
        self.index = {row["clip_id"]: row for row in rows}
        self._open: dict[str, h5py.File] = {}
        foreign = foreign_shards(self.folder, sorted({row["shard"] for row in rows}), extraction)
        if foreign:
            raise FeatureError(foreign[0])

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self.index

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def clip_ids(self) -> list[str]:
        return list(self.index)

    def dims(self) -> FeatureDims:
        """The feature sizes and audio frame rate, the same for every clip; FeatureError otherwise."""
        found = {FeatureDims(int(r["audio_dim"]), int(r["video_dim"]), float(r["audio_rate"]))
                 for r in self.index.values()}
        if not found:
            raise FeatureError(f"{self.folder}: no clips in {INDEX_FILE}; run make features for this dataset")
        if len(found) > 1:
            raise FeatureError(f"{self.folder}: shards of different feature sizes {sorted(map(str, found))}; "
                               "redo the extraction (make features FORCE=1)")
        return found.pop()

    def video_rate(self) -> float:
        """The median frame rate of the clips with video (videos of one corpus may differ slightly); 0 if none."""
        rates = [float(r["video_rate"]) for r in self.index.values() if int(r["has_video"])]
        return float(np.median(rates)) if rates else 0.0

    def load(self, clip_id: str) -> ClipFeatures:
        entry = self.index[clip_id]
        h5 = self._open.get(entry["shard"])
        if h5 is None:
            h5 = self._open[entry["shard"]] = open_shard(self.folder / entry["shard"])
        return _clip_from(h5, int(entry["row"]), clip_id, self.folder / entry["shard"])

    def close(self) -> None:
        for h5 in self._open.values():
            h5.close()
        self._open.clear()
