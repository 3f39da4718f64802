"""Feature shards: HDF5 files of whole clips, written atomically, and the index loaders read.

A shard holds a batch of clips with their per-frame arrays concatenated (one dataset each, so a
clip is one contiguous slice, not a handful of tiny datasets) and a ``clips`` table of offsets:

    mel         (audio frames, n_mels) float32      log-mel
    embedding   (video frames, dim) float32         face embedding; zeros where no valid face
    valid       (video frames,) bool                a usable face on that frame
    boxes       (video frames, 4) float32           face box x, y, w, h in pixels; NaN if none
    timestamps  (video frames,) float64             frame time in seconds
    clips/...   one row per clip: id, offsets and lengths into the arrays above, why a modality
                is missing, duration, fps
    attrs       layout_version, audio_rate (log-mel frames a second)

A shard is written whole under a temporary name and renamed into place, so readers (and a rerun
after ``kill -9``) see only complete shards; a run loses at most the clips it had not yet
flushed. ``index.csv`` lists every clip of every shard with what a loader needs without opening
the shards or reading extraction.yaml (INDEX_COLUMNS: frame counts, feature sizes and frame
rates); it is rebuilt from the shards at the end of each run (and by ``make verify-features``).
"""
from __future__ import annotations

import csv
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from common import files
from common.errors import ProjectError

SHARD_SUFFIX = ".h5"
INDEX_FILE = "index.csv"
LAYOUT_VERSION = 2
INDEX_COLUMNS = ("clip_id", "shard", "row", "audio_frames", "video_frames", "has_audio", "has_video",
                 "audio_dim", "video_dim", "audio_rate", "video_rate")


class FeatureError(ProjectError):
    """An extraction folder, shard or index that cannot be read or used; the message names the file."""


@dataclass
class ClipFeatures:
    clip_id: str
    mel: np.ndarray  # (audio frames, n_mels); empty when the clip has no audio
    embedding: np.ndarray  # (video frames, dim); empty when the clip has no video
    valid: np.ndarray
    boxes: np.ndarray
    timestamps: np.ndarray
    duration: float
    fps: float
    audio_note: str = ""  # why there is no audio, empty when there is
    video_note: str = ""  # why there is no video (or no face), empty when there is

    @property
    def has_audio(self) -> bool:
        return len(self.mel) > 0

    @property
    def has_video(self) -> bool:
        return bool(self.valid.any()) if len(self.valid) else False


@dataclass(frozen=True)
class FeatureDims:
    audio_dim: int  # mel bands
    video_dim: int  # face embedding size
    audio_rate: float  # audio frames a second


@dataclass
class ShardWriter:
    """Buffers clips and writes them as shards of ``clips_per_shard`` (one writer per process)."""

    folder: Path
    prefix: str
    clips_per_shard: int
    n_mels: int
    embedding_dim: int
    audio_rate: float
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
            _write_shard(h5, self.pending, self.n_mels, self.embedding_dim, self.audio_rate)
        self.written += len(self.pending)
        self.pending = []


def _write_shard(h5: h5py.File, clips: list[ClipFeatures], n_mels: int, dim: int, audio_rate: float) -> None:
    h5.attrs["layout_version"] = LAYOUT_VERSION
    h5.attrs["audio_rate"] = audio_rate
    h5.create_dataset("mel", data=_stack([c.mel for c in clips], (0, n_mels), np.float32))
    h5.create_dataset("embedding", data=_stack([c.embedding for c in clips], (0, dim), np.float32))
    h5.create_dataset("valid", data=_stack([c.valid for c in clips], (0,), bool))
    h5.create_dataset("boxes", data=_stack([c.boxes for c in clips], (0, 4), np.float32))
    h5.create_dataset("timestamps", data=_stack([c.timestamps for c in clips], (0,), np.float64))
    audio_frames = np.array([len(c.mel) for c in clips])
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


def _stack(arrays: list[np.ndarray], empty_shape: tuple, dtype) -> np.ndarray:
    present = [np.asarray(a, dtype=dtype).reshape((-1, *empty_shape[1:])) for a in arrays]
    return np.concatenate(present) if present else np.zeros(empty_shape, dtype)


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SHARD_SUFFIX}"))


def remove_partial_shards(folder: Path, prefix: str) -> int:
    """Delete what an interrupted run of the part ``prefix`` left half-written; returns how many."""
    leftovers = list(folder.glob(f"{prefix}-*{SHARD_SUFFIX}.*{files.PARTIAL_SUFFIX}"))
    for leftover in leftovers:
        leftover.unlink()
    return len(leftovers)


def open_shard(path: Path) -> h5py.File:
    """The shard opened for reading; FeatureError naming it when it is damaged."""
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise FeatureError(f"{path}: damaged feature shard ({error}); delete it and rerun make features "
                           "(its clips are extracted again), or redo the extraction with FORCE=1") from None
    if h5.attrs.get("layout_version") != LAYOUT_VERSION:
        h5.close()
        raise FeatureError(f"{path}: written by another version of the extraction (layout "
                           f"{h5.attrs.get('layout_version')}, this code reads {LAYOUT_VERSION}); "
                           "redo the extraction with make features FORCE=1")
    return h5


def clip_ids_in(path: Path) -> list[str]:
    with open_shard(path) as h5:
        return [s.decode() for s in h5["clips/id"][:]]


def _index_rows(path: Path) -> list[dict]:
    with open_shard(path) as h5:
        table = h5["clips"]
        valid = h5["valid"][:]
        audio_dim, video_dim = h5["mel"].shape[1], h5["embedding"].shape[1]
        rows = []
        for row, clip_id in enumerate(s.decode() for s in table["id"][:]):
            start, frames = int(table["video_offset"][row]), int(table["video_frames"][row])
            audio_frames = int(table["audio_frames"][row])
            rows.append({"clip_id": clip_id, "shard": path.name, "row": row, "audio_frames": audio_frames,
                         "video_frames": frames, "has_audio": int(audio_frames > 0),
                         "has_video": int(bool(valid[start:start + frames].any())),
                         "audio_dim": audio_dim, "video_dim": video_dim,
                         "audio_rate": float(h5.attrs["audio_rate"]), "video_rate": float(table["fps"][row])})
        return rows


def build_index(folder: Path) -> list[dict]:
    """Rows of index.csv from every complete shard, written atomically; returns the rows."""
    rows = [row for path in shard_files(folder) for row in _index_rows(path)]
    files.write_csv(folder / INDEX_FILE, INDEX_COLUMNS, rows)
    return rows


class FeatureStore:
    """Reads clips from an extraction folder through its index; shards are opened on first use."""

    def __init__(self, folder: Path):
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
        self.index = {row["clip_id"]: row for row in rows}
        self._open: dict[str, h5py.File] = {}

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

    def load(self, clip_id: str) -> ClipFeatures:
        entry = self.index[clip_id]
        h5 = self._open.get(entry["shard"])
        if h5 is None:
            h5 = self._open[entry["shard"]] = open_shard(self.folder / entry["shard"])
        table, row = h5["clips"], int(entry["row"])
        a0, na = int(table["audio_offset"][row]), int(table["audio_frames"][row])
        v0, nv = int(table["video_offset"][row]), int(table["video_frames"][row])
        return ClipFeatures(
            clip_id=clip_id, mel=h5["mel"][a0:a0 + na], embedding=h5["embedding"][v0:v0 + nv],
            valid=h5["valid"][v0:v0 + nv], boxes=h5["boxes"][v0:v0 + nv], timestamps=h5["timestamps"][v0:v0 + nv],
            duration=float(table["duration"][row]), fps=float(table["fps"][row]),
            audio_note=table["audio_note"][row].decode(), video_note=table["video_note"][row].decode())

    def close(self) -> None:
        for h5 in self._open.values():
            h5.close()
        self._open.clear()
