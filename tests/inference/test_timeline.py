"""Long recordings predicted segment by segment (inference.segments, inference.timeline, make predict
--segments): utterances found where a recording of demo voices, joined with silences, has its
speech; fixed windows that cover a recording exactly; the CSV, JSON and timeline picture written;
segments where the face has left the frame predicted from their audio, with a note; and the
per-file output unchanged with --segments none."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from corpora.crema_d import CLASSES
from corpora.demo.media import write_flv
from extract.audio import read_audio
from extract.model_files import SILERO_VAD, ModelFileError, model_path
from inference.segments import (
    RecordingAudio,
    Segment,
    SegmentConfig,
    SegmentError,
    fixed_segments,
    utterance_segments,
)
from pipeline.predict import main
from tests.model.test_windowed_prediction import run_dir  # noqa: F401 (a fixture)

FPS, RATE = 30, 16_000
PAUSE = 1.0  # seconds of silence (and of frames without a face) between the clips
# The AAC encoder's priming samples: the FLV's decoded track keeps them, so its sound comes this
# much later than in the samples written (the demo's FLV tracks lag their WAVs by exactly 1024).
AAC_PRIMING = 1024 / 16_000
# The recording's parts: a demo clip with its face, one whose face has left the frame, one with it.
FACE_GONE = 1


def _clip(demo_corpus: Path, clip_id: str) -> tuple[list[np.ndarray], np.ndarray]:
    """A demo clip's I420 frames and its WAV, cut or padded to the frames' length."""
    with av.open(str(demo_corpus / "VideoFlash" / f"{clip_id}.flv")) as container:
        frames = [frame.to_ndarray(format="yuv420p") for frame in container.decode(video=0)]
    samples = soundfile.read(demo_corpus / "AudioWAV" / f"{clip_id}.wav", dtype="float32")[0]
    length = round(len(frames) / FPS * RATE)
    return frames, np.pad(samples, (0, max(0, length - len(samples))))[:length]


def _voiced(samples: np.ndarray) -> tuple[float, float]:
    """Where a demo clip's voice is: its 10 ms RMS above 8 times that of the room noise it opens with."""
    rms = np.sqrt(np.convolve(samples ** 2, np.ones(160) / 160, "same"))
    loud = np.flatnonzero(rms > 8 * np.median(rms[:1600]))
    return loud[0] / RATE, loud[-1] / RATE


@pytest.fixture(scope="module")
def recording(demo_corpus, tmp_path_factory) -> tuple[Path, list[tuple[float, float]], float]:
    """An FLV of three demo clips, each after a second of silence over blank frames, the middle clip's
    frames blank too (its face gone); its voiced intervals and its face-gone span."""
    blank = np.full((360 * 3 // 2, 480), 128, np.uint8)  # mid-grey I420: no face
    frames, audio, speech, t = [], [], [], 0.0
    clip_ids = sorted(p.stem for p in (demo_corpus / "VideoFlash").glob("*.flv"))[:3]
    for index, clip_id in enumerate(clip_ids):
        frames += [blank] * round(PAUSE * FPS)
        audio.append(np.zeros(round(PAUSE * RATE), np.float32))
        t += PAUSE
        clip_frames, samples = _clip(demo_corpus, clip_id)
        frames += [blank] * len(clip_frames) if index == FACE_GONE else clip_frames
        audio.append(samples)
        start, end = _voiced(samples)
        speech.append((t + start + AAC_PRIMING, t + end + AAC_PRIMING))
        if index == FACE_GONE:
            gone = (t, t + len(clip_frames) / FPS)
        t += len(clip_frames) / FPS
    frames += [blank] * round(PAUSE * FPS)
    audio.append(np.zeros(round(PAUSE * RATE), np.float32))
    path = tmp_path_factory.mktemp("long") / "long.flv"
    write_flv(path, frames, np.concatenate(audio))
    return path, speech, gone


@pytest.fixture(scope="module")
def vad_model() -> Path:
    try:
        return model_path(SILERO_VAD, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"Silero VAD model not available: {error}")


def predict(video: Path, run_dir: Path, out_dir: Path, *options: str) -> tuple[int, dict, list[dict]]:
    code = main(["--video", str(video), "--run-dir", str(run_dir), "--out-dir", str(out_dir), "--device", "cpu",
                 *options])
    with open(out_dir / f"{video.stem}.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return code, json.loads((out_dir / f"{video.stem}.json").read_text()), rows


def test_fixed_windows_cover_the_recording_exactly():
    for duration, seconds, hop in ((10.0, 4.0, 0.0), (8.0, 4.0, 4.0), (3.0, 4.0, 0.0), (10.0, 4.0, 1.5)):
        windows = fixed_segments(duration, seconds, hop)
        assert windows[0].start == 0 and windows[-1].end == duration
        assert all(w.end - w.start <= seconds + 1e-9 for w in windows)
        assert all(b.start <= a.end for a, b in zip(windows, windows[1:]))  # no gap
        assert all(b.start == pytest.approx(a.start + (hop or seconds)) for a, b in zip(windows, windows[1:]))
        assert windows[-2].end < duration if len(windows) > 1 else True  # no window past what is needed


def test_utterances_are_joined_widened_and_cut_to_the_trained_lengths():
    segments = utterance_segments([(1.0, 1.4), (1.7, 2.1), (5.0, 5.5), (8.0, 21.0)], 30.0, 1.5, 6.0)
    spans = [(round(s.start, 3), round(s.end, 3)) for s in segments]
    # Two short bursts across a short pause joined, then widened about their centre; a burst after a
    # long pause widened alone; 13 s cut in three.
    assert spans[:2] == [(0.8, 2.3), (4.5, 6.0)]
    assert spans[2:] == [(8.0, 12.333), (12.333, 16.667), (16.667, 21.0)]
    assert segments[0].speech_seconds == pytest.approx(0.8) and segments[1].speech_seconds == pytest.approx(0.5)


def test_options_out_of_range_say_which():
    with pytest.raises(SegmentError, match="--hop-seconds"):
        SegmentConfig(segments="fixed", segment_seconds=2.0, hop_seconds=3.0)
    with pytest.raises(SegmentError, match="--segments must be one of"):
        SegmentConfig(segments="pauses")


def test_speech_segments_are_found_where_the_voices_are(recording, run_dir, vad_model, tmp_path):
    video, voiced, gone = recording
    code, written, rows = predict(video, run_dir, tmp_path, "--segments", "speech")
    assert code == 0
    [timeline] = written["recordings"]
    found = timeline["speech"]
    assert len(found) == len(voiced)
    for (start, end), (true_start, true_end) in zip(found, voiced):
        assert abs(start - true_start) < 0.2 and abs(end - true_end) < 0.2, (found, voiced)
    assert sum(timeline["emotion_share"].values()) == pytest.approx(1)
    assert list(rows[0])[:5] == ["file", "segment", "start", "end", "speech_seconds"]
    assert {"emotion", *(f"p_{name}" for name in CLASSES), "modalities", "face_share", "note"} <= set(rows[0])
    assert len(rows) == len(voiced)  # each utterance one segment: 1.5 to 6 s long
    for row in rows:
        assert 1.5 - 1e-3 <= float(row["end"]) - float(row["start"]) <= 6.0 and row["emotion"]
        inside_gone = gone[0] <= float(row["start"]) and float(row["end"]) <= gone[1] + PAUSE
        assert row["modalities"] == ("audio" if inside_gone else "audio+video"), row
        assert ("no face in this segment" in row["note"]) == inside_gone
        assert (float(row["face_score"]) == 0) == inside_gone  # the detections within the segment only
    picture = tmp_path / "long.timeline.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fixed_windows_of_a_video_without_sound(turned_clips, run_dir, tmp_path):
    video = turned_clips[0]  # a demo clip's frames, no sound track
    code, written, rows = predict(video, run_dir, tmp_path, "--segments", "fixed", "--segment-seconds", "1")
    assert code == 0
    [timeline] = written["recordings"]
    assert float(rows[0]["start"]) == 0 and float(rows[-1]["end"]) == pytest.approx(timeline["duration"], abs=1e-3)
    assert all(float(a["end"]) == float(b["start"]) for a, b in zip(rows, rows[1:]))
    assert {row["modalities"] for row in rows} == {"video"}
    assert (tmp_path / f"{video.stem}.timeline.png").is_file()
    # Speech cannot be looked for without a sound track: the error says what does it instead.
    code, written, rows = predict(video, run_dir, tmp_path / "speech", "--segments", "speech")
    assert code == 1 and "--segments fixed" in rows[0]["error"] and not written["recordings"][0]["segments"]


def test_a_broken_file_costs_only_its_row(turned_clips, run_dir, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(turned_clips[0].read_bytes())
    (folder / "b.mp4").write_bytes(b"not a video")
    code = main(["--video", str(folder), "--run-dir", str(run_dir), "--out-dir", str(tmp_path), "--device", "cpu",
                 "--segments", "fixed", "--segment-seconds", "1"])
    with open(tmp_path / "clips.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert code == 1
    assert {row["file"] for row in rows if row["emotion"]} == {"a.mp4"}
    [broken] = [row for row in rows if row["file"] == "b.mp4"]
    assert "nothing to predict from" in broken["error"] and broken["segment"] == ""
    assert (tmp_path / "a.timeline.png").is_file() and not (tmp_path / "b.timeline.png").exists()


def test_each_segment_gets_the_samples_of_the_whole_track_without_it_being_held(recording):
    path = recording[0]
    whole = read_audio(path)[0]
    audio = RecordingAudio.scan(path, 400)
    assert audio.usable and audio.samples == len(whole)
    # Overlapping windows, a gap, a segment past the end: as slices of the whole track.
    end = audio.seconds
    segments = fixed_segments(4.0, 2.0, 0.5) + [Segment(end - 3, end - 1.5, 1.5), Segment(end - 1, end + 9, 1)]
    for segment, samples in zip(segments, audio.between(segments), strict=True):
        assert np.array_equal(samples, whole[round(segment.start * RATE):round(segment.end * RATE)])
    short = RecordingAudio.scan(path, len(whole) + 1)
    assert short.note == f"audio shorter than one analysis window ({len(whole)} samples)" and not short.usable
