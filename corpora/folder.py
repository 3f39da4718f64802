"""A plain folder of recordings to predict on: no labels, no speakers, no splits.

Every video below the folder (``.mp4 .avi .flv .mkv .mov .webm``, any case) is one clip; its
clip id is its path below the folder without the extension (``interviews/day1``). The audio is
a same-named ``.wav`` beside the video when there is one, otherwise the video's own audio track;
a video without either is kept as a video-only clip, a ``.wav`` without a video as an audio-only
clip. A video PyAV cannot open is skipped and reported.

Split rule: none. The clips are recordings to predict on, so no partition is made and every
clip's split and label stay empty.
"""
from __future__ import annotations

from pathlib import Path

import av

from corpora.manifest import ClipRecord, Corpus, CorpusError, SkippedFile

CORPUS_NAME = "plain folder"
VIDEO_SUFFIXES = (".mp4", ".avi", ".flv", ".mkv", ".mov", ".webm")
AUDIO_SUFFIX = ".wav"
LABEL_RULES = ("none",)


def read_corpus(root: Path, label_rule: str = "none", ratings: str = "") -> Corpus:
    if label_rule not in LABEL_RULES:
        raise CorpusError(f"a plain folder has no labels: --label-rule {label_rule!r} does not apply; leave it out")
    if ratings:
        raise CorpusError(f"a plain folder has no ratings: --ratings {ratings!r} does not apply; leave it out")
    if not root.is_dir():
        raise CorpusError(f"{root}: folder not found; give the folder that holds the videos (--corpus-dir)")
    clips: dict[str, dict[str, str]] = {}
    skipped = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES and suffix != AUDIO_SUFFIX:
            continue
        relative = path.relative_to(root).as_posix()
        clip_id = relative[: -len(path.suffix)]
        kind = "audio" if suffix == AUDIO_SUFFIX else "video"
        files = clips.setdefault(clip_id, {})
        if kind in files:
            skipped.append(SkippedFile(relative, f"a second {kind} file for clip {clip_id} ({files[kind]} is used)"))
            continue
        if kind == "video":
            problem = _video_problem(path)
            if problem:
                skipped.append(SkippedFile(relative, problem))
                continue
        files[kind] = relative
    records = [_clip_record(root, clip_id, files) for clip_id, files in sorted(clips.items()) if files]
    if not records:
        raise CorpusError(f"{root}: no readable video ({' '.join(VIDEO_SUFFIXES)}) or .wav file below it")
    return Corpus(CORPUS_NAME, root, (), "none", "", records, skipped)


def _video_problem(path: Path) -> str:
    """Why PyAV cannot use ``path`` as a video, or '' when it can."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream"
    except (av.FFmpegError, OSError) as error:
        return f"unreadable video ({error.__class__.__name__})"
    return ""


def has_audio_track(path: Path) -> bool:
    """Whether the video has an audio track; False for one PyAV cannot open (reported where it is decoded)."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False


def _clip_record(root: Path, clip_id: str, files: dict[str, str]) -> ClipRecord:
    video = files.get("video", "")
    audio = files.get("audio", "")
    if not audio and video and has_audio_track(root / video):
        audio = video
    return ClipRecord(clip_id=clip_id, audio_path=audio, video_path=video)
