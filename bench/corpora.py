"""The corpora the benchmark builds and reads: the demo corpora of each size (generated once into
the work folder and reused), the clip-length series (the same demo clips joined end to end into
fewer, longer clips), one long clip for memory, long recordings for segment prediction (demo clips
in turn with pauses between them), and the choice of the demo clip that prediction is timed on.
"""
from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np


def demo_corpus(work_dir: Path, actors: int, sentences: int, seed: int, workers: int) -> tuple[Path, dict]:
    """A demo corpus under work_dir/corpora, generated unless a finished one is there."""
    from corpora.demo.generate import DemoConfig, generate

    out = work_dir / "corpora" / f"demo-a{actors}-s{sentences}-seed{seed}"
    report = generate(DemoConfig(out_dir=out, actors=actors, sentences=sentences, seed=seed, workers=workers))
    return out, {"label": f"a{actors}", "actors": actors, "sentences": sentences, "clips": report.clips,
                 "generated_seconds": None if report.skipped else round(report.elapsed_seconds, 1)}


def join_clips(sources: Sequence[tuple[Path, Path]], video_out: Path, audio_out: Path) -> int:
    """One clip made of demo clips (FLV video, WAV sound) one after another; returns its frames.
    The frames are written as they are decoded: three minutes of them would take 1.5 GB."""
    import soundfile

    from corpora.demo import media

    samples = np.concatenate([soundfile.read(audio, dtype="float32")[0] for _, audio in sources])
    media.write_wav(audio_out, samples)
    return media.write_flv(video_out, _frames_of(video for video, _ in sources), samples)


def _frames_of(videos: Iterable[Path]) -> Iterator[np.ndarray]:
    import av

    for video in videos:
        with av.open(str(video)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="yuv420p")


def length_series(corpus: Path, clips: int, factors: Sequence[int], work_dir: Path) -> dict[int, Path]:
    """Folders of the corpus's first ``clips`` clips joined ``factor`` at a time: the same frames, longer clips.

    Plain folders of videos with a WAV beside each (the folder dataset), so extraction reads the
    audio from a WAV as it does for the demo corpus.
    """
    from corpora import crema_d

    videos = sorted((corpus / crema_d.VIDEO_DIR).glob("*.flv"))[:clips]
    pairs = [(video, corpus / crema_d.AUDIO_DIR / f"{video.stem}.wav") for video in videos]
    folders = {}
    for factor in factors:
        folder = work_dir / "corpora" / f"joined-{corpus.name}-n{clips}" / f"x{factor}"
        done = folder / ".done"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for start in range(0, len(pairs) - factor + 1, factor):
                name = f"joined{start // factor:03d}"
                join_clips(pairs[start:start + factor], folder / f"{name}.flv", folder / f"{name}.wav")
            done.touch()
        folders[factor] = folder
    return folders


def long_clip(corpus: Path, clips: int, work_dir: Path) -> tuple[Path, int]:
    """A folder holding one clip, the corpus's first ``clips`` clips joined end to end (all of them when
    it has fewer), and how many were joined."""
    from corpora import crema_d

    clips = min(clips, sum(1 for _ in (corpus / crema_d.VIDEO_DIR).glob("*.flv")))
    return length_series(corpus, clips, [clips], work_dir)[clips], clips


# Between two clips of a long recording: silence over the next clip's first frame held, so that the
# voice activity detector has a pause to find and the face stays in view, as a speaker's does.
RECORDING_PAUSE_SECONDS = 1.0


def long_recording(corpus: Path, minutes: float, work_dir: Path) -> Path:
    """An FLV (its sound as the video's own AAC track, as a user's recording has it) of the corpus's
    clips in turn, over and over, each after a pause of RECORDING_PAUSE_SECONDS, lasting at least
    ``minutes``; made once under work_dir/corpora and reused."""
    from corpora.demo import media

    path = work_dir / "corpora" / f"recording-{corpus.name}" / f"recording-{minutes:g}min.flv"
    if path.exists():  # written atomically: a file there is complete
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    clips = _recording_clips(corpus, minutes * 60)
    media.write_flv(path, _recording_frames(clips), _recording_sound(corpus, clips))
    return path


def _recording_clips(corpus: Path, seconds: float) -> list[tuple[Path, int]]:
    """The corpus's videos in turn, over and over, with their frames, until they and their pauses
    last ``seconds``."""
    from corpora import crema_d

    videos = sorted((corpus / crema_d.VIDEO_DIR).glob("*.flv"))
    if not videos:
        raise FileNotFoundError(f"{corpus}: no demo clips to join")
    lengths = {video: sum(1 for _ in _frames_of([video])) for video in videos}
    clips, frames, pause = [], 0, round(RECORDING_PAUSE_SECONDS * crema_d.VIDEO_FPS)
    while frames < seconds * crema_d.VIDEO_FPS:
        video = videos[len(clips) % len(videos)]
        clips.append((video, lengths[video]))
        frames += pause + lengths[video]
    return clips


def _recording_frames(clips: Sequence[tuple[Path, int]]) -> Iterator[np.ndarray]:
    """Each clip's first frame held through the pause before it, then its frames (I420), as decoded."""
    from corpora import crema_d

    pause = round(RECORDING_PAUSE_SECONDS * crema_d.VIDEO_FPS)
    for video, _ in clips:
        frames = _frames_of([video])
        first = next(frames)
        yield from [first] * (pause + 1)
        yield from frames


def _recording_sound(corpus: Path, clips: Sequence[tuple[Path, int]]) -> np.ndarray:
    """Silence through each pause, then the clip's WAV cut or padded to its frames' length."""
    import soundfile

    from corpora import crema_d

    rate, fps = crema_d.AUDIO_SAMPLE_RATE, crema_d.VIDEO_FPS
    parts = []
    for video, frames in clips:
        samples = soundfile.read(corpus / crema_d.AUDIO_DIR / f"{video.stem}.wav", dtype="float32")[0]
        length = round(frames / fps * rate)
        parts += [np.zeros(round(RECORDING_PAUSE_SECONDS * rate), np.float32),
                  np.pad(samples, (0, max(0, length - len(samples))))[:length]]
    return np.concatenate(parts)


def clip_nearest(features: Path, corpus: Path, seconds: float) -> tuple[str, Path, float]:
    """The corpus clip whose video lasts nearest ``seconds`` (index.csv's video steps over their rate),
    and its duration (its frames, every one decoded, over the video's frame rate)."""
    from corpora import crema_d
    from extract.face_track import Video

    with open(features / "index.csv", newline="") as stream:
        lengths = {row["clip_id"]: int(row["video_frames"]) / float(row.get("video_rate") or crema_d.VIDEO_FPS)
                   for row in csv.DictReader(stream)}
    clip_id = min(sorted(lengths), key=lambda c: abs(lengths[c] - seconds))
    path = corpus / crema_d.VIDEO_DIR / f"{clip_id}.flv"
    with Video(path) as video:
        frames = sum(1 for _ in video.frames())
        return clip_id, path, frames / video.fps
