"""The generator: deterministic, resumable, refusing to clobber, and true to its design."""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import soundfile

from corpora.crema_d import ClipName
from corpora.demo import design
from corpora.demo.actors import make_actor
from corpora.demo.generate import DemoConfig, generate
from corpora.demo.separability import pitch_track
from corpora.demo.timeline import plan_clip
from corpora.demo.voice import synthesize
from corpora.manifest import CorpusError
from pipeline import demo_data

TINY = {"actors": 1, "sentences": 1, "seed": 7}  # 16 clips: actor 1001 saying IEO


def digests(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


def test_same_seed_gives_identical_wavs_and_tables_whatever_the_workers(tmp_path, demo_corpus):
    again = tmp_path / "again"
    generate(DemoConfig(out_dir=again, actors=2, sentences=2, seed=7, workers=1))
    assert digests(again / "AudioWAV", "*.wav") == digests(demo_corpus / "AudioWAV", "*.wav")
    assert digests(again / "processedResults", "*.csv") == digests(demo_corpus / "processedResults", "*.csv")
    assert (again / "VideoDemographics.csv").read_text() == (demo_corpus / "VideoDemographics.csv").read_text()


def test_another_seed_gives_other_audio(tmp_path, demo_corpus):
    other = tmp_path / "other"
    generate(DemoConfig(out_dir=other, **{**TINY, "seed": 8}, workers=1))
    name = "1001_IEO_NEU_XX.wav"
    assert digests(other / "AudioWAV", name) != digests(demo_corpus / "AudioWAV", name)


def test_rerun_skips_and_interrupted_run_resumes_without_touching_finished_clips(tmp_path):
    out = tmp_path / "demo"
    config = DemoConfig(out_dir=out, workers=1, **TINY)
    first = generate(config)
    assert (first.clips, first.written, first.skipped) == (16, 16, False)
    assert generate(config).skipped

    before = digests(out / "AudioWAV", "*.wav")
    finished = out / "AudioWAV" / "1001_IEO_HAP_LO.wav"
    finished_mtime = finished.stat().st_mtime_ns
    # What a kill leaves: no stamp, two clips missing a file, a half-written file.
    (out / ".done").unlink()
    (out / "AudioWAV" / "1001_IEO_SAD_HI.wav").unlink()
    (out / "VideoFlash" / "1001_IEO_ANG_MD.flv").unlink()
    (out / "VideoFlash" / "1001_IEO_ANG_MD.flv.partial").write_bytes(b"truncated")

    resumed = generate(config)
    assert resumed.written == 2
    assert digests(out / "AudioWAV", "*.wav") == before
    assert finished.stat().st_mtime_ns == finished_mtime
    assert (out / "VideoFlash" / "1001_IEO_ANG_MD.flv").stat().st_size > 10_000
    assert not list(out.rglob("*.partial"))


def test_changed_config_regenerates_instead_of_mixing_corpora(tmp_path):
    out = tmp_path / "demo"
    generate(DemoConfig(out_dir=out, workers=1, **TINY))
    report = generate(DemoConfig(out_dir=out, workers=1, **{**TINY, "seed": 9}))
    assert report.written == 16


def test_refuses_to_write_into_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(CorpusError, match="not written by the demo generator"):
        generate(DemoConfig(out_dir=tmp_path, workers=1, **TINY))
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_stage_reports_bad_options_in_one_line(tmp_path, capsys):
    assert demo_data.main(["--out-dir", str(tmp_path / "x"), "--sentences", "13"]) == 2
    assert "--sentences must be between 1 and 12" in capsys.readouterr().err


def test_every_pair_one_modality_confuses_the_other_separates():
    """The design's promise: fusion is needed (each modality confuses some pairs) and sufficient."""

    def distance(cues: dict, scale: dict, a: str, b: str) -> float:
        return float(np.sqrt(sum(((getattr(cues[a], f) - getattr(cues[b], f)) / scale[f]) ** 2 for f in scale)))

    # Cue scales: how much actors differ at rest, or a just-noticeable step where they do not.
    face_scale = {f.name: 0.12 for f in fields(design.FaceCues)}
    voice_scale = {"pitch_semitones": 2.0, "pitch_range": 0.3, "tempo": 0.1, "loudness_db": 2.0, "tension": 0.3,
                   "breathiness": 0.2, "tremor": 0.3}
    confused = {"face": set(), "voice": set()}
    for a, b in itertools.combinations(design.FACE_CUES, 2):
        face = distance(design.FACE_CUES, face_scale, a, b)
        voice = distance(design.VOICE_CUES, voice_scale, a, b)
        assert max(face, voice) > 2.0, f"{a} and {b} look and sound alike"
        if face < 1.5:
            confused["face"].add(frozenset((a, b)))
        if voice < 1.5:
            confused["voice"].add(frozenset((a, b)))
    assert confused["face"] == {frozenset(p) for p in design.FACE_CONFUSIONS.items()}
    assert confused["voice"] == {frozenset(p) for p in design.VOICE_CONFUSIONS.items()}


def test_voice_follows_sex_and_emotion_and_speaks_only_in_syllables():
    male, female = make_actor(1001, "Male", 0), make_actor(1002, "Female", 0)

    def render(actor, emotion):
        clip = ClipName(actor.actor_id, "TAI", emotion, "XX")
        timeline = plan_clip(clip, actor, np.random.default_rng(1))
        return timeline, synthesize(clip, actor, timeline, np.random.default_rng(2))

    def median_pitch(samples):
        f0, voiced = pitch_track(samples, 16000)
        return float(np.median(f0[voiced]))

    timeline, neutral_male = render(male, "NEU")
    _, neutral_female = render(female, "NEU")
    assert median_pitch(neutral_female) > 1.4 * median_pitch(neutral_male)
    assert median_pitch(render(male, "FEA")[1]) > median_pitch(neutral_male) * 2 ** (3 / 12)
    assert np.sqrt(np.mean(render(male, "ANG")[1] ** 2)) > 1.5 * np.sqrt(np.mean(neutral_male ** 2))

    first = timeline.syllables[0]
    silence = neutral_male[: int(first.start * 16000) - 160]
    vowel = neutral_male[int(first.vowel_start * 16000): int(first.end * 16000)]
    assert 20 * np.log10(np.std(vowel) / np.std(silence)) > 20
    speech_opening = timeline.articulation(np.array([first.start / 2, (first.vowel_start + first.end) / 2]))
    assert speech_opening[0] == 0 and speech_opening[1] > 0.3


def test_written_wav_round_trips_the_synthesized_samples(tmp_path):
    from corpora.demo.media import write_wav

    samples = np.sin(np.linspace(0, 200, 16000)).astype(np.float32) * 0.5
    write_wav(tmp_path / "a.wav", samples)
    read, rate = soundfile.read(tmp_path / "a.wav", dtype="float32")
    assert rate == 16000 and np.max(np.abs(read - samples)) < 1 / 32767 * 1.01
