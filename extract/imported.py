"""Bring your own video features: per-frame arrays computed elsewhere (EMOCA, OpenFace, a face
network of one's own, the reference's) imported into the same shards as extracted ones.

Reads the corpus's clips (corpora.registry), their audio (encoded with the spec's audio encoder,
as an extraction does) and, from ``--video-features-from DIR``, for each clip either

- ``DIR/<clip id>.npy``: one (frames, dim) array, or
- ``DIR/<clip id>/<...><number>.npy``: one (dim,) array per frame, the layout the reference
  reads (ilucasgoncalves/AuxFormer, ``utils/extractor.py``, ``VidExtractor``: a folder per clip,
  named as the clip's WAV without ``.wav``, one ``.npy`` per frame). The reference takes the
  frames in ``os.listdir`` order, which is the file system's, not time's; here they are sorted by
  the last number in the file name, and a name without one, or two files of one number, is an
  error naming the folder.

The frames are ``--video-rate`` a second, given by the user, and each clip's frame count is
checked against its duration (its video's, else its audio's): a clip that differs by more than
LENGTH_TOLERANCE_SECONDS (or one frame, when that is longer) is refused with both durations, as
is every clip when most disagree (a wrong rate). A frame whose numbers are all zero is taken as
one without a face, as the reference's zero-filled frames are. Face boxes are unknown (NaN).

``import_clips`` gives the clips' features to extract.engine, which writes them as it writes
extracted ones (the same folder name from the spec, part lock, shards, index.csv, extraction.yaml
with empty face-encoder entries, failures files; a rerun skips the clips already imported).
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from extract.clip_media import LENGTH_TOLERANCE_SECONDS, ClipJob, clip_audio
from extract.shards import ClipFeatures, FeatureError
from extract.spec import Extractor

AUDIO_BATCH = 16  # clips whose audio is encoded together
NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _load_array(path: Path) -> np.ndarray:
    """An array of numbers from a .npy file; FeatureError naming it for anything else (a text file,
    pickled objects, which are never unpickled, an array of strings or objects)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FeatureError(f"{path}: not a NumPy array file ({str(error).splitlines()[0]}); write each clip's "
                           "features with numpy.save, as an array of numbers") from None
    what = f"an array of {array.dtype}" if isinstance(array, np.ndarray) else "an archive of arrays"
    if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise FeatureError(f"{path}: {what}, not an array of numbers; write each clip's features with numpy.save, "
                           "as numbers")
    return array


def clip_arrays(root: Path, clip_id: str) -> np.ndarray | None:
    """The clip's (frames, dim) float32 array from either layout; None when the folder has neither."""
    single, folder = root / f"{clip_id}.npy", root / clip_id
    if single.is_file():
        array = _load_array(single)
        if array.ndim != 2:
            raise FeatureError(f"{single}: an array of shape {array.shape}; a clip's file holds (frames, dim)")
        return array.astype(np.float32)
    if not folder.is_dir():
        return None
    numbered = {}
    for path in folder.glob("*.npy"):
        match = NUMBER.search(path.stem)
        if match is None:
            raise FeatureError(f"{folder}: {path.name} has no frame number in its name; name the frames e.g. "
                               "frame_0001.npy")
        number = int(match.group(1))
        if number in numbered:
            raise FeatureError(f"{folder}: {numbered[number].name} and {path.name} are both frame {number}")
        numbered[number] = path
    if not numbered:
        return None
    frames = [_load_array(numbered[number]).reshape(-1) for number in sorted(numbered)]
    if len({len(frame) for frame in frames}) > 1:
        raise FeatureError(f"{folder}: frames of different sizes {sorted({len(f) for f in frames})}")
    return np.stack(frames).astype(np.float32)


def media_seconds(job: ClipJob, audio: np.ndarray | None) -> float:
    """The clip's duration: its video container's, else its audio's; 0 when neither is known."""
    if job.video_path is not None:
        try:
            with av.open(str(job.video_path)) as container:
                if container.duration:
                    return container.duration / av.time_base
        except av.error.FFmpegError:
            pass
    return len(audio) / 16_000 if audio is not None else 0.0


def length_problem(frames: int, rate: float, seconds: float) -> str:
    """Why ``frames`` at ``rate`` cannot be a clip of ``seconds``, or ''."""
    tolerance = max(LENGTH_TOLERANCE_SECONDS, 1.0 / rate)
    if not seconds or abs(frames / rate - seconds) <= tolerance:
        return ""
    return (f"{frames} frames at {rate:g} a second last {frames / rate:.2f} s, the clip {seconds:.2f} s "
            "(another --video-rate? arrays of another clip?)")


def import_clips(todo: list[ClipJob], extractor: Extractor, report) -> tuple[int, Iterator[ClipFeatures]]:
    """The size of the imported arrays and, clip by clip, the features of ``todo``: the arrays of
    the spec's ``video_features_from`` with each clip's encoded audio. ``report`` (an
    extract.engine.RunReport) counts them, and the clips that yield nothing, as it goes."""
    spec = extractor.spec
    source, rate = Path(spec.video_features_from), spec.video_rate
    if not source.is_dir():
        raise FeatureError(f"--video-features-from {source}: no such folder")
    clips, dim = [], None
    for job in tqdm(todo, unit="clip", desc="import", disable=not todo):
        arrays = clip_arrays(source, job.clip_id)
        if arrays is not None:
            if dim is not None and arrays.shape[1] != dim:
                raise FeatureError(f"{source}: {job.clip_id} has {arrays.shape[1]} numbers a frame, other clips {dim}")
            if not np.isfinite(arrays).all():
                raise FeatureError(f"{source}: the arrays of {job.clip_id} hold NaN or infinite numbers; fix or "
                                   "remove that clip's file and import again")
            dim = arrays.shape[1]
        audio, audio_note = clip_audio(job, extractor.track)
        clips.append((job, arrays, audio, audio_note))
    if clips and dim is None:
        raise FeatureError(f"--video-features-from {source}: no <clip id>.npy and no <clip id>/ folder of frames for "
                           f"any of the {len(clips)} clips (e.g. {clips[0][0].clip_id})")
    mismatched = [(job.clip_id, problem) for job, arrays, audio, _ in clips if arrays is not None
                  and (problem := length_problem(len(arrays), rate, media_seconds(job, audio)))]
    if clips and len(mismatched) > len(clips) / 2:
        raise FeatureError(f"{source}: {len(mismatched)} of {len(clips)} clips disagree with their durations at "
                           f"--video-rate {rate:g} (e.g. {mismatched[0][0]}: {mismatched[0][1]}); give the "
                           "arrays' frame rate")
    return dim or 1, _features(clips, dict(mismatched), source, dim or 1, extractor, report)


def _features(clips: list, refused: dict[str, str], source: Path, dim: int, extractor: Extractor,
              report) -> Iterator[ClipFeatures]:
    rate = extractor.spec.video_rate
    for start in range(0, len(clips), AUDIO_BATCH):
        batch = clips[start:start + AUDIO_BATCH]
        tick = time.perf_counter()
        encoded = iter(extractor.audio_encoder([audio for _, _, audio, _ in batch if audio is not None]))
        report.seconds["audio_encoding"] += time.perf_counter() - tick
        for job, arrays, audio, audio_note in batch:
            features = next(encoded) if audio is not None else np.zeros((0, extractor.audio_dim), np.float32)
            video_note = refused.get(job.clip_id, "" if arrays is not None else f"no video features in {source}")
            if video_note:
                arrays = np.zeros((0, dim), np.float32)
            if not len(features) and not len(arrays):
                report.failures.append((job.clip_id, f"{audio_note or 'no audio'}; {video_note}"))
                continue
            report.clips += 1
            report.frames += len(arrays)
            report.face_frames += int(np.any(arrays != 0, axis=1).sum())
            report.audio_missing += not len(features)
            report.video_missing += not np.any(arrays != 0)
            yield _clip_features(job, features, arrays, rate, media_seconds(job, audio), audio_note, video_note)


def _clip_features(job: ClipJob, audio: np.ndarray, video: np.ndarray, rate: float, seconds: float,
                   audio_note: str, video_note: str) -> ClipFeatures:
    frames = len(video)
    return ClipFeatures(clip_id=job.clip_id, audio=audio, embedding=video, valid=np.any(video != 0, axis=1),
                        boxes=np.full((frames, 4), np.nan, np.float32), timestamps=np.arange(frames) / rate,
                        duration=seconds, fps=rate, audio_note=audio_note, video_note=video_note)
