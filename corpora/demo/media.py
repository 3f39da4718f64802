"""Writing a clip's media in CREMA-D's (and RAVDESS's) formats, atomically.

Each file is written under a temporary name in its final folder and renamed into place when
complete, so an interrupted run never leaves a truncated clip where readers look.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np
import soundfile

from common import files
from corpora.crema_d import AUDIO_SAMPLE_RATE, VIDEO_FPS, VIDEO_SIZE

VIDEO_BITRATE = 300_000


def write_wav(path: Path, samples: np.ndarray) -> None:
    """16 kHz mono 16-bit PCM."""
    with files.atomic_path(path) as partial:
        soundfile.write(partial, samples, AUDIO_SAMPLE_RATE, subtype="PCM_16", format="WAV")


def write_flv(path: Path, frames: Iterable[np.ndarray], samples: np.ndarray) -> int:
    """FLV with Sorenson H.263 video (480x360, 30 fps) and the audio as an AAC track, as CREMA-D's.

    ``frames`` are I420 arrays (see corpora.demo.face.FaceRenderer.frames).
    Returns the number of video frames written.
    """
    return _write_video(path, frames, samples, "flv", "flv")


def write_mp4(path: Path, frames: Iterable[np.ndarray], samples: np.ndarray) -> int:
    """MP4 with MPEG-4 Part 2 video and an AAC track, as RAVDESS's full audio-video files (which are
    H.264: any PyAV build has an MPEG-4 encoder, not every one libx264)."""
    return _write_video(path, frames, samples, "mp4", "mpeg4")


def _write_video(path: Path, frames: Iterable[np.ndarray], samples: np.ndarray, container_format: str,
                 codec: str) -> int:
    with files.atomic_path(path) as partial:
        width, height = VIDEO_SIZE
        # The audio follows all the video; without a limit on how long the muxer waits to interleave
        # them (10 s by default), a longer clip's audio would come after later video and be refused.
        with av.open(str(partial), "w", format=container_format,
                     container_options={"max_interleave_delta": "0"}) as container:
            video = container.add_stream(codec, rate=VIDEO_FPS)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.bit_rate = VIDEO_BITRATE
            audio = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout="mono")
            audio.options = {"aac_coder": "fast"}
            n_frames = 0
            for n_frames, planes in enumerate(frames, start=1):
                video_frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                video_frame.pts = n_frames - 1
                container.mux(video.encode(video_frame))
            container.mux(video.encode())
            _encode_audio(container, audio, samples)
    return n_frames


def _encode_audio(container, stream, samples: np.ndarray) -> None:
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)
    frame_size = stream.codec_context.frame_size
    for start in range(0, len(pcm), frame_size):
        chunk = pcm[None, start:start + frame_size]
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def remove_partial_files(folder: Path) -> int:
    """Delete what an interrupted run left half-written; returns how many files."""
    leftovers = list(folder.glob(f"*{files.PARTIAL_SUFFIX}"))
    for leftover in leftovers:
        leftover.unlink()
    return len(leftovers)
