"""Audio: read a clip's samples (WAV, or the audio track of a video) and compute log-mel spectra.

The log-mel spectrum is librosa's definition, computed with torchaudio so that it runs in
batches on the GPU as well as on the CPU: power spectrogram of a Hann window (``win_ms``),
``hop_ms`` hop, frames centred with zero padding, Slaney mel filters with Slaney area
normalisation, then ``10 * log10(max(mel, 1e-10))``. It equals
``librosa.power_to_db(librosa.feature.melspectrogram(y, sr, n_fft, hop_length, win_length,
n_mels), ref=1.0, amin=1e-10, top_db=None)`` (tests/extract/test_audio.py states the tolerance).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile
import torch
import torchaudio

SAMPLE_RATE = 16_000
AMIN = 1e-10


class NoAudio(Exception):
    """The file has no usable audio (no track, nothing decodable, or too short)."""


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate, from a WAV (or any soundfile format) or a video's track."""
    if path.suffix.lower() in {".wav", ".flac", ".ogg"}:
        try:
            samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise NoAudio(f"unreadable audio file: {error}") from None
        return samples.mean(axis=1), rate
    return _demux_audio(path)


def _demux_audio(path: Path) -> tuple[np.ndarray, int]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise NoAudio("the video has no audio track")
            stream = container.streams.audio[0]
            # Each frame mono as it comes: holding every channel of a long track until its end took
            # as many times the memory as it has channels.
            chunks = [_to_mono(frame.to_ndarray(), stream) for frame in container.decode(stream)]
            rate = stream.codec_context.sample_rate
    except av.error.FFmpegError as error:
        raise NoAudio(f"audio track not decodable: {error}") from None
    if not chunks:
        raise NoAudio("the audio track is empty")
    return np.concatenate(chunks).astype(np.float32, copy=False), rate


def _to_mono(chunk: np.ndarray, stream) -> np.ndarray:
    """PyAV gives planar audio as (channels, samples) and packed audio as (1, samples * channels)."""
    channels = stream.codec_context.channels
    if chunk.shape[0] == channels:
        return chunk.mean(axis=0)
    return chunk.reshape(-1, channels).mean(axis=1)


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    if rate == target:
        return samples
    waveform = torch.from_numpy(np.ascontiguousarray(samples))
    return torchaudio.functional.resample(waveform, rate, target).numpy()


# Streamed audio comes in blocks of about this many seconds: long enough that the per-block work is
# small beside the samples', short enough that a block is a few MB whatever the recording's length.
BLOCK_SECONDS = 10.0
# Input samples on each side of a resampled block beyond the filter's reach (torchaudio's default
# sinc filter reaches 6 zero crossings: 17 samples from 44.1 kHz, 19 from 48 kHz).
RESAMPLE_CONTEXT = 2048


def audio_blocks(path: Path, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """A file's audio as ``read_audio`` then ``resample`` give it, in consecutive 16 kHz mono float32
    blocks, without the whole of it in memory: equal, joined, to the whole within 1e-6."""
    rate, pieces = _audio_pieces(path)
    blocks = _joined(pieces, round(block_seconds * rate))
    yield from blocks if rate == SAMPLE_RATE else resampled_blocks(blocks, rate, block_seconds)


def _audio_pieces(path: Path) -> tuple[int, Iterator[np.ndarray]]:
    """The rate and mono float32 pieces (of whatever length the decoder gives) of a file's audio."""
    if path.suffix.lower() in {".wav", ".flac", ".ogg"}:
        try:
            rate = soundfile.info(path).samplerate
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise NoAudio(f"unreadable audio file: {error}") from None
        return rate, (block.mean(axis=1) for block in
                      soundfile.blocks(path, blocksize=rate, dtype="float32", always_2d=True))
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise NoAudio(f"audio track not decodable: {error}") from None
    if not container.streams.audio:
        container.close()
        raise NoAudio("the video has no audio track")
    stream = container.streams.audio[0]
    return stream.codec_context.sample_rate, _demuxed_pieces(container, stream)


def _demuxed_pieces(container, stream) -> Iterator[np.ndarray]:
    with container:
        try:
            for frame in container.decode(stream):
                yield _to_mono(frame.to_ndarray(), stream).astype(np.float32, copy=False)
        except av.error.FFmpegError as error:
            raise NoAudio(f"audio track not decodable: {error}") from None


def _joined(pieces: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Pieces joined into blocks of ``size`` samples (the last one shorter), each joined once."""
    held, count = [], 0
    for piece in pieces:
        held.append(piece)
        count += len(piece)
        while count >= size:
            joined = np.concatenate(held)
            yield joined[:size]
            held, count = [joined[size:]], count - size
    if count:
        yield np.concatenate(held)


def resampled_blocks(blocks: Iterable[np.ndarray], rate: int, block_seconds: float = BLOCK_SECONDS,
                     target: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """``resample`` of the joined blocks, a block at a time: each is resampled with RESAMPLE_CONTEXT
    input samples of its neighbours on each side, and cut where the filter's input steps
    (``rate / gcd`` samples) meet, so that each output sample is computed from the same inputs as in
    the whole."""
    step = rate // math.gcd(rate, target)  # input samples per filter step
    out_step = target // math.gcd(rate, target)
    context = step * (math.ceil(RESAMPLE_CONTEXT / step) + 1)
    size = step * max(1, round(block_seconds * rate / step))
    held = np.zeros(0, np.float32)
    held_from = 0  # the input position of held[0]
    done = 0  # input samples whose output is out; a multiple of step
    for block in blocks:
        held = np.concatenate([held, block])
        while held_from + len(held) >= done + size + context:
            start = max(0, done - context)
            window = held[start - held_from:done + size + context - held_from]
            yield _resampled_part(window, rate, target, done - start, size, step, out_step)
            done += size
            keep = max(0, done - context)
            held, held_from = held[keep - held_from:], keep
    start = max(0, done - context)
    tail = held[start - held_from:]
    if len(tail) > done - start:  # the last block: resampled to the end, as the whole is
        yield resample(tail, rate, target)[(done - start) // step * out_step:]


def _resampled_part(window: np.ndarray, rate: int, target: int, offset: int, size: int, step: int,
                    out_step: int) -> np.ndarray:
    """The output of the ``size`` input samples at ``offset`` in ``window``, from the window resampled."""
    first = offset // step * out_step
    return resample(window, rate, target)[first:first + size // step * out_step]


@dataclass(frozen=True)
class MelConfig:
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    sample_rate: int = SAMPLE_RATE

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    def frames(self, samples: int) -> int:
        """Frames of a clip of ``samples`` samples (centred frames)."""
        return 1 + samples // self.hop_length


# Clips longer than this many frames (60 s at a 10 ms hop) have their log-mel computed this many
# frames at a time: the whole clip's spectrogram at once took 30 MB a minute of audio.
PIECE_FRAMES = 6000


class LogMel:
    """Batched log-mel spectra on one device."""

    def __init__(self, config: MelConfig, device: str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.transform = self._transform(center=True)
        self.uncentred = self._transform(center=False)

    def _transform(self, center: bool) -> torchaudio.transforms.MelSpectrogram:
        config = self.config
        return torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.win_length, win_length=config.win_length,
            hop_length=config.hop_length, n_mels=config.n_mels, power=2.0, center=center, pad_mode="constant",
            norm="slaney", mel_scale="slaney",
        ).to(self.device)

    @torch.inference_mode()
    def __call__(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Log-mel (frames x n_mels, float32) of each clip: the short ones in one batch, each long one
        (over PIECE_FRAMES frames) in pieces."""
        short = [index for index, clip in enumerate(clips) if self.config.frames(len(clip)) <= PIECE_FRAMES]
        log_mels = dict(zip(short, self._batch([clips[index] for index in short])))
        return [log_mels[index] if index in log_mels else self._in_pieces(clip) for index, clip in enumerate(clips)]

    def _batch(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Zero padding to the longest clip in the batch changes nothing: centred frames are
        zero-padded at the ends anyway."""
        if not clips:
            return []
        longest = max(len(c) for c in clips)
        batch = torch.zeros(len(clips), longest)
        for row, clip in enumerate(clips):
            batch[row, : len(clip)] = torch.from_numpy(clip)
        log_mel = self._log(self.transform(batch.to(self.device)))
        return [log_mel[row, : self.config.frames(len(clip))] for row, clip in enumerate(clips)]

    def _in_pieces(self, clip: np.ndarray) -> np.ndarray:
        """The centred frames of a long clip, PIECE_FRAMES at a time: each piece's frames from its own
        samples, with the zeros a centred frame has past the clip's ends, through the uncentred
        transform, so that each frame is computed from the samples it has in the whole."""
        n_fft, hop = self.config.win_length, self.config.hop_length
        frames = self.config.frames(len(clip))
        log_mel = np.empty((frames, self.config.n_mels), np.float32)
        for first in range(0, frames, PIECE_FRAMES):
            last = min(frames, first + PIECE_FRAMES)
            start, end = first * hop - n_fft // 2, (last - 1) * hop - n_fft // 2 + n_fft
            piece = np.pad(clip[max(0, start):max(0, min(end, len(clip)))],
                           (max(0, -start), max(0, end - max(start, len(clip)))))
            log_mel[first:last] = self._log(self.uncentred(torch.from_numpy(piece)[None].to(self.device)))[0]
        return log_mel

    @staticmethod
    def _log(mel: torch.Tensor) -> np.ndarray:
        return (10.0 * torch.log10(torch.clamp(mel, min=AMIN))).transpose(1, 2).cpu().numpy()
