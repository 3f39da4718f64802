"""Log-mel spectra equal librosa's for the same parameters, alone or batched; audio reading, whole
or in blocks (which equal the whole, resampled or not)."""
from __future__ import annotations

import librosa
import numpy as np
import soundfile

from extract.audio import (
    PIECE_FRAMES,
    LogMel,
    MelConfig,
    audio_blocks,
    read_audio,
    resample,
    resampled_blocks,
)

# float32 (torch) against float64 (librosa) on a decibel scale: differences stay near 1e-3 dB on
# speech and noise (a pure tone's empty bands, near -100 dB, differ more in float32).
TOLERANCE_DB = 1e-2


def librosa_log_mel(samples: np.ndarray, config: MelConfig) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=samples, sr=config.sample_rate, n_fft=config.win_length,
                                         hop_length=config.hop_length, win_length=config.win_length,
                                         n_mels=config.n_mels)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T


def test_log_mel_equals_librosa_alone_and_in_a_batch(demo_corpus):
    config = MelConfig(n_mels=80, win_ms=25, hop_ms=10)
    clips = [read_audio(p)[0] for p in sorted((demo_corpus / "AudioWAV").glob("*.wav"))[:3]]
    clips.append(np.random.default_rng(0).normal(0, 0.1, 3210).astype(np.float32))
    batched = LogMel(config)(clips)
    for clip, mel in zip(clips, batched):
        reference = librosa_log_mel(clip, config)
        assert mel.shape == reference.shape == (config.frames(len(clip)), 80)
        assert np.abs(mel - reference).max() < TOLERANCE_DB
        assert np.abs(mel - LogMel(config)([clip])[0]).max() < 1e-4  # batching changes nothing


def test_other_mel_parameters_follow_the_config():
    config = MelConfig(n_mels=40, win_ms=32, hop_ms=20)
    clip = np.random.default_rng(1).normal(0, 0.05, 8000).astype(np.float32)
    (mel,) = LogMel(config)([clip])
    assert mel.shape == (1 + 8000 // 320, 40)
    assert np.abs(mel - librosa_log_mel(clip, config)).max() < TOLERANCE_DB


def test_audio_at_another_rate_is_resampled_to_16k(tmp_path):
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32) * 0.5
    soundfile.write(tmp_path / "tone.wav", np.stack([tone, tone], axis=1), 44100)
    samples, rate = read_audio(tmp_path / "tone.wav")
    assert rate == 44100 and samples.ndim == 1
    resampled = resample(samples, rate)
    assert len(resampled) == 16000
    spectrum = np.abs(np.fft.rfft(resampled))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins over one second


def test_audio_in_blocks_equals_the_whole_read_and_resampled(demo_corpus, tmp_path):
    rng = np.random.default_rng(2)
    for rate in (44100, 48000, 22050, 8000):
        samples = rng.normal(0, 0.1, (rate * 7 + 101, 2)).astype(np.float32)
        path = tmp_path / f"noise{rate}.wav"
        soundfile.write(path, samples, rate, subtype="FLOAT")
        whole = resample(*read_audio(path))
        blocks = list(audio_blocks(path, block_seconds=2.0))
        assert len(blocks) > 3 and all(block.dtype == np.float32 for block in blocks)
        joined = np.concatenate(blocks)
        assert len(joined) == len(whole) and np.abs(joined - whole).max() < 1e-6
    video = sorted((demo_corpus / "VideoFlash").glob("*.flv"))[0]  # its own AAC track, at 16 kHz
    assert np.array_equal(np.concatenate(list(audio_blocks(video, block_seconds=0.5))), read_audio(video)[0])


def test_resampling_in_blocks_of_any_size_equals_the_whole():
    samples = np.random.default_rng(3).normal(0, 0.1, 44100 * 5 + 17).astype(np.float32)
    whole = resample(samples, 44100)
    for sizes in ((1000,) * 300, (44100 * 5 + 17,), (5, 200_000, 20_512)):
        edges = np.cumsum((0,) + sizes)
        blocks = [samples[a:b] for a, b in zip(edges, edges[1:]) if a < len(samples)]
        joined = np.concatenate(list(resampled_blocks(blocks, 44100, block_seconds=0.7)))
        assert len(joined) == len(whole) and np.abs(joined - whole).max() < 1e-6


def test_a_long_clips_log_mel_in_pieces_equals_the_whole_at_once():
    import torch

    config = MelConfig()
    log_mel = LogMel(config)
    rng = np.random.default_rng(4)
    hop = config.hop_length
    # Just past one piece, two pieces and a part, and a short clip beside them in the batch.
    lengths = (hop * PIECE_FRAMES + 5, hop * (2 * PIECE_FRAMES + 7) + 99, 3210)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in lengths]
    results = log_mel(clips)
    for clip, result in zip(clips, results):
        with torch.inference_mode():
            whole = log_mel.transform(torch.from_numpy(clip)[None])
        reference = (10 * torch.log10(torch.clamp(whole, min=1e-10)))[0].T.numpy()
        assert result.shape == reference.shape == (config.frames(len(clip)), config.n_mels)
        assert np.abs(result - reference).max() < 1e-5
