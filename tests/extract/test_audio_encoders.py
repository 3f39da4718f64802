"""Audio encoders: eGeMAPS against openSMILE called directly on a WAV; wav2vec2 on small models of
the real architecture, built here, saved with save_pretrained and loaded through the path users
take (a folder given as --audio-weights): sizes, frame rate, batch invariance, chunking, the
layer cut, the weights' identity in extraction.yaml, and the errors for missing or wrong weights."""
from __future__ import annotations

import huggingface_hub
import numpy as np
import pytest
import soundfile
import torch

from common.config import from_values
from extract.audio import SAMPLE_RATE, read_audio
from extract.audio_encoders import AudioEncoderError, make_audio_encoder
from extract.audio_encoders.wav2vec2 import Wav2Vec2Options
from extract.spec import ExtractionSpec, Extractor
from extract.tiny_wav2vec2 import saved_wav2vec2

transformers = pytest.importorskip("transformers")
opensmile = pytest.importorskip("opensmile")

# Clips batched together differ from the clip alone by float32 rounding of other matrix shapes:
# measured up to 3e-6 on outputs of about 1.
BATCH_TOLERANCE = 1e-4
# Chunked encoding misses the attention to audio beyond a chunk's context: on the small random
# model below (4 s chunks, 1 s context, 10 s clip) the mean difference was 0.08% of the mean value.
CHUNK_RELATIVE_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    return folder, saved_wav2vec2(folder)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced tone with a moving pitch and syllable-like loudness, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / SAMPLE_RATE) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * voice * envelope + 0.01 * rng.normal(size=len(t))).astype(np.float32)


def encoder(folder, device="cpu", **options):
    """The wav2vec2 encoder of the model in ``folder``, its options named without their audio_ prefix."""
    values = {f"audio_{name}": value for name, value in {"layer": 4, **options}.items()}
    return make_audio_encoder("wav2vec2", Wav2Vec2Options(audio_weights=str(folder), **values), device)


def test_egemaps_are_what_opensmile_computes_from_the_wav(tmp_path):
    wav = tmp_path / "clip.wav"
    soundfile.write(wav, speech_like(1.5), SAMPLE_RATE, subtype="PCM_16")
    samples, rate = read_audio(wav)
    [ours] = make_audio_encoder("egemaps")([samples])
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    theirs = smile.process_file(str(wav)).to_numpy(np.float32)
    assert rate == SAMPLE_RATE and ours.shape == theirs.shape == (146, 25)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    assert np.ptp(ours[:, 0]) > 0  # loudness follows the syllables: real descriptors, not zeros


def test_egemaps_size_and_rate_are_recorded_for_the_loaders():
    egemaps = make_audio_encoder("egemaps")
    assert (egemaps.dim, egemaps.rate) == (25, 100.0)
    [frames] = egemaps([speech_like(2.0)])
    assert abs(len(frames) / egemaps.rate - 2.0) < 0.1


def test_wav2vec2_frames_are_the_models_at_50_a_second(tiny):
    folder, model = tiny
    wav2vec2 = encoder(folder, layer=4)
    clip = speech_like(1.0)
    [ours] = wav2vec2([clip])
    assert (wav2vec2.dim, wav2vec2.rate, wav2vec2.min_samples) == (32, 50.0, 400)
    expected_frames = int(model._get_feat_extract_output_lengths(torch.tensor(len(clip))))
    assert ours.shape == (expected_frames, 32) == (49, 32)
    # Frame k covers samples k*320 .. k*320+400: the last one ends within one frame of the clip's end,
    # so audio frames line up with the video frames of the same seconds.
    assert 0 <= len(clip) / SAMPLE_RATE - ((len(ours) - 1) * 320 + 400) / SAMPLE_RATE < 1 / wav2vec2.rate
    standardised = (clip - clip.mean()) / (clip.std() + 1e-6)
    with torch.no_grad():
        theirs = model(torch.from_numpy(standardised)[None]).last_hidden_state[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=BATCH_TOLERANCE)


def test_the_layer_cut_gives_that_layers_output_through_the_final_norm(tiny):
    folder, model = tiny
    clip = speech_like(0.8)
    [ours] = encoder(folder, layer=2, norm="none")([clip])
    with torch.no_grad():
        hidden = model(torch.from_numpy(clip)[None], output_hidden_states=True).hidden_states
        theirs, next_layer = (model.encoder.layer_norm(hidden[k])[0].numpy() for k in (2, 3))
    np.testing.assert_allclose(ours, theirs, atol=BATCH_TOLERANCE)
    assert not np.allclose(ours, next_layer, atol=1e-2)


@pytest.mark.parametrize("front_end_norm", ["layer", "group"])
def test_a_clips_features_do_not_depend_on_its_batch(tmp_path, front_end_norm):
    changes = {} if front_end_norm == "layer" else dict(feat_extract_norm="group", do_stable_layer_norm=False)
    saved_wav2vec2(tmp_path, **changes)
    wav2vec2 = encoder(tmp_path)
    short, long, other = speech_like(0.7, 1), speech_like(2.3, 2), speech_like(0.7, 3)
    [alone] = wav2vec2([short])
    batched = wav2vec2([long, short, other])
    assert [len(b) for b in batched] == [114, 34, 34]
    np.testing.assert_allclose(batched[1], alone, atol=BATCH_TOLERANCE)
    np.testing.assert_allclose(batched[0], wav2vec2([long])[0], atol=BATCH_TOLERANCE)


def test_chunks_with_the_whole_clip_as_context_join_into_the_unchunked_output(tiny):
    folder, _ = tiny
    clip = speech_like(7.0)
    [whole] = encoder(folder)([clip])
    [joined] = encoder(folder, chunk_seconds=2.0, context_seconds=10.0)([clip])
    assert joined.shape == whole.shape == (349, 32)
    np.testing.assert_allclose(joined, whole, atol=BATCH_TOLERANCE)


def test_chunks_with_a_short_context_stay_within_the_stated_tolerance(tiny):
    folder, _ = tiny
    clip = speech_like(10.0)
    [whole] = encoder(folder)([clip])
    [joined] = encoder(folder, chunk_seconds=4.0, context_seconds=1.0)([clip])
    assert joined.shape == whole.shape
    assert np.abs(joined - whole).mean() < CHUNK_RELATIVE_TOLERANCE * np.abs(whole).mean()
    assert not np.array_equal(joined, whole)  # the chunks really were encoded apart


def test_the_extraction_records_the_encoders_size_rate_and_weights(tiny, tmp_path):
    folder, _ = tiny
    options = {"audio_encoder": "wav2vec2", "audio_layer": 3, "detector": "haar"}
    spec = from_values(ExtractionSpec, {**options, "audio_weights": str(folder)})
    record = Extractor(spec).record()
    assert (record.models["audio_dim"], record.models["audio_rate"]) == (32, 50.0)
    assert len(record.models["audio_sha256"]) == 64 and "cut after layer 3" in record.packages["audio_encoder"]
    assert spec.folder_name().startswith("fer-haar-r4-k4-wav2vec2L3-")
    other = tmp_path / "retrained"
    model = saved_wav2vec2(other)
    with torch.no_grad():
        model.feature_projection.projection.weight.add_(0.1)
    model.save_pretrained(other)
    differing = record.differences(Extractor(from_values(ExtractionSpec, {**options, "audio_weights": str(other)}))
                                   .record())
    assert len(differing) == 1 and differing[0].startswith("audio_sha256")


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(AudioEncoderError, match="facebook/wav2vec2-large-robust: not in the Hugging Face cache "
                                                "and never downloaded here.*hf download"):
        encoder("facebook/wav2vec2-large-robust")
    with pytest.raises(AudioEncoderError, match="needs --audio-weights"):
        encoder("")
    with pytest.raises(AudioEncoderError, match="not a folder holding a Hugging Face checkpoint"):
        encoder(tmp_path / "no-such" / "folder")


def test_weights_of_another_kind_or_too_few_layers_are_refused(tiny, tmp_path):
    folder, _ = tiny
    with pytest.raises(AudioEncoderError, match=r"--audio-layer 12: .* has transformer layers 1 to 4"):
        encoder(folder, layer=12)
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=16, vocab_size=50))
    bert.save_pretrained(tmp_path / "bert")
    with pytest.raises(AudioEncoderError, match="a 'bert' model; --audio-encoder wav2vec2 takes wav2vec2, hubert"):
        encoder(tmp_path / "bert")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(AudioEncoderError, match="no readable Hugging Face config.json"):
        encoder(tmp_path / "broken")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: CPU/GPU agreement needs one")
def test_wav2vec2_on_cuda_matches_cpu(tiny):
    folder, _ = tiny
    clips = [speech_like(1.3, 1), speech_like(0.6, 2)]
    on_cpu = encoder(folder)(clips)
    on_gpu = encoder(folder, "cuda")(clips)
    for cpu, gpu in zip(on_cpu, on_gpu):
        np.testing.assert_allclose(gpu, cpu, atol=1e-4)


def test_fixed_standardisation_uses_the_given_mean_and_deviation(tiny):
    folder, _ = tiny
    clip = speech_like(1.0)
    [fixed] = encoder(folder, norm="fixed", norm_mean=0.01, norm_std=0.3)([clip])
    [by_hand] = encoder(folder, norm="none")([(clip - 0.01) / (0.3 + 1e-6)])
    np.testing.assert_allclose(fixed, by_hand, atol=BATCH_TOLERANCE)


def test_half_precision_is_an_approximation_of_float32(tiny):
    folder, _ = tiny
    clip = speech_like(1.0)
    [full] = encoder(folder)([clip])
    [half] = encoder(folder, precision="bfloat16")([clip])
    assert half.dtype == np.float32 and half.shape == full.shape
    assert 0 < np.abs(half - full).mean() < 0.05 * np.abs(full).mean()
