"""The demo corpus looks to a reader exactly like CREMA-D: layout, media formats, vote tables."""
from __future__ import annotations

import csv
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile

from corpora import crema_d
from corpora.crema_d import ClipName, recorded_clips
from corpora.demo.generate import DONE_FILE

REAL_CREMA_D = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpora" / "crema-d"


def clip_ids(corpus: Path) -> list[str]:
    with open(corpus / crema_d.SENTENCE_FILENAMES, newline="") as f:
        return [row["Filename"] for row in csv.DictReader(f)]


def test_layout_and_clip_names_follow_crema_d(demo_corpus):
    ids = clip_ids(demo_corpus)
    expected = [c.id for actor in (1001, 1002) for c in recorded_clips(actor, ("IEO", "TIE"))]
    assert ids == expected
    assert sorted(p.stem for p in (demo_corpus / "AudioWAV").glob("*.wav")) == sorted(ids)
    assert sorted(p.stem for p in (demo_corpus / "VideoFlash").glob("*.flv")) == sorted(ids)
    emotions = {ClipName.parse(i).emotion for i in ids}
    assert emotions == set(crema_d.EMOTIONS)
    assert {ClipName.parse(i).level for i in ids if i.split("_")[1] == "IEO"} == {"LO", "MD", "HI", "XX"}
    assert (demo_corpus / DONE_FILE).exists()
    assert not list(demo_corpus.rglob("*.partial"))


def test_wavs_are_16k_mono_pcm16(demo_corpus):
    for wav in sorted((demo_corpus / "AudioWAV").glob("*.wav"))[:10]:
        info = soundfile.info(wav)
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "WAV", "PCM_16")
        assert 1.0 < info.duration < 5.0


def test_flv_has_h263_video_480x360_30fps_and_aac_audio(demo_corpus):
    clip = clip_ids(demo_corpus)[5]
    flv = demo_corpus / "VideoFlash" / f"{clip}.flv"
    wav_seconds = soundfile.info(demo_corpus / "AudioWAV" / f"{clip}.wav").duration
    with av.open(str(flv)) as container:
        assert container.format.name == "flv"
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "flv"  # Sorenson H.263, as CREMA-D's VideoFlash
        assert (video.codec_context.width, video.codec_context.height) == (480, 360)
        assert audio.codec_context.name == "aac" and audio.sample_rate == 16000 and audio.channels == 1
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == round(wav_seconds * 30)

    capture = cv2.VideoCapture(str(flv))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    ok, image = capture.read()
    capture.release()
    assert ok and image.shape == (360, 480, 3)


def test_video_audio_track_is_the_wav(demo_corpus):
    clip = clip_ids(demo_corpus)[20]
    wav, _ = soundfile.read(demo_corpus / "AudioWAV" / f"{clip}.wav", dtype="float32")
    with av.open(str(demo_corpus / "VideoFlash" / f"{clip}.flv")) as container:
        track = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    # AAC adds a little delay and coding noise: find the best lag, then compare.
    n = min(len(wav), len(track)) - 2048
    lags = range(0, 2048, 8)
    scores = [np.corrcoef(wav[:n], track[lag:lag + n])[0, 1] for lag in lags]
    assert max(scores) > 0.95


def test_vote_tables_have_crema_d_format(demo_corpus):
    ids = clip_ids(demo_corpus)
    results = demo_corpus / "processedResults"
    tabulated = (results / "tabulatedVotes.csv").read_text().splitlines()
    summary = (results / "summaryTable.csv").read_text().splitlines()
    if REAL_CREMA_D.is_dir():
        assert tabulated[0] == (REAL_CREMA_D / "tabulatedVotes.csv").read_text().splitlines()[0]
        assert summary[0] == (REAL_CREMA_D / "summaryTable.csv").read_text().splitlines()[0]
        real_demographics = (REAL_CREMA_D / "VideoDemographics.csv").read_text().splitlines()[0]
        assert (demo_corpus / "VideoDemographics.csv").read_text().splitlines()[0] == real_demographics

    rows = list(csv.DictReader(tabulated))
    assert len(rows) == 3 * len(ids)
    seen = set()
    for row in rows:
        modality, number = divmod(int(row[""]), 100000)
        assert ids[number - 1] == row["fileName"]
        seen.add((modality, row["fileName"]))
        counts = {letter: int(row[letter]) for letter in crema_d.VOTE_LETTERS}
        assert sum(counts.values()) == int(row["numResponses"]) >= 7
        top = max(counts.values())
        assert row["emoVote"] == ":".join(k for k, v in counts.items() if v == top)
        assert float(row["agreement"]) == pytest.approx(top / int(row["numResponses"]))
        for letter, name in zip(crema_d.VOTE_LETTERS, ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad")):
            assert (float(row[f"mean{name}Resp"]) == -1) == (counts[letter] == 0)
    assert seen == {(m, i) for m in (1, 2, 3) for i in ids}

    votes = {(int(r[""]) // 100000, r["fileName"]): r["emoVote"] for r in rows}
    for row in csv.DictReader(summary):
        assert row["VoiceVote"] == votes[(1, row["FileName"])]
        assert row["FaceVote"] == votes[(2, row["FileName"])]
        assert row["MultiModalVote"] == votes[(3, row["FileName"])]
        assert len(row["MultiModalLevel"].split(":")) == len(row["MultiModalVote"].split(":"))


def test_raters_mostly_but_not_always_perceive_the_intended_emotion(demo_corpus):
    with open(demo_corpus / "processedResults" / "tabulatedVotes.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r[""].startswith("3")]
    letter = {code: crema_d.EMOTIONS[code] for code in crema_d.EMOTIONS}
    intended_votes = sum(int(r[letter[ClipName.parse(r["fileName"]).emotion]]) for r in rows)
    all_votes = sum(int(r["numResponses"]) for r in rows)
    assert 0.5 < intended_votes / all_votes < 0.95


def test_demographics_name_every_actor_with_both_sexes(demo_corpus):
    with open(demo_corpus / "VideoDemographics.csv", newline="") as f:
        actors = list(csv.DictReader(f))
    assert [int(a["ActorID"]) for a in actors] == [1001, 1002]
    assert {a["Sex"] for a in actors} == {"Male", "Female"}
