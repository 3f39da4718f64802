"""A plain folder of recordings: which files become clips, and where their audio comes from."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from corpora import folder
from corpora.manifest import CorpusError, load_manifest
from corpora.registry import ManifestConfig, build_manifest


def write_video(path: Path, with_audio: bool) -> None:
    """Half a second of grey frames, and a tone track when asked."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=16000) if with_audio else None
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 100, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            samples = (0.1 * np.sin(np.arange(8000) / 10)).astype(np.float32)[None, :]
            for start in range(0, 8000, 1024):
                frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="flt", layout="mono")
                frame.sample_rate, frame.pts = 16000, start
                container.mux(audio.encode(frame))
            container.mux(audio.encode())


@pytest.fixture
def recordings(tmp_path) -> Path:
    root = tmp_path / "recordings"
    (root / "day2").mkdir(parents=True)
    write_video(root / "talk.mp4", with_audio=True)
    write_video(root / "day2" / "silent.MKV", with_audio=False)
    write_video(root / "dubbed.avi", with_audio=False)
    soundfile.write(root / "dubbed.wav", np.zeros(1600, np.float32), 16000)
    soundfile.write(root / "voice_only.wav", np.zeros(1600, np.float32), 16000)
    (root / "broken.webm").write_text("not a video")
    (root / "notes.txt").write_text("ignored")
    return root


def test_clips_and_their_audio_sources(recordings):
    corpus = folder.read_corpus(recordings)
    got = {c.clip_id: (c.audio_path, c.video_path) for c in corpus.clips}
    assert got == {
        "talk": ("talk.mp4", "talk.mp4"),  # the video's own audio track
        "dubbed": ("dubbed.wav", "dubbed.avi"),  # the same-named WAV beside it
        "day2/silent": ("", "day2/silent.MKV"),  # video only
        "voice_only": ("voice_only.wav", ""),  # audio only
    }
    assert [(s.path, s.reason.startswith("unreadable video")) for s in corpus.skipped] == [("broken.webm", True)]
    assert not any(c.label or c.split or c.speaker for c in corpus.clips)


def test_folder_manifest_has_no_splits(recordings, tmp_path):
    out, _ = build_manifest(ManifestConfig(dataset="folder", corpus_dir=str(recordings), manifests_dir=tmp_path / "m"))
    assert out == tmp_path / "m" / "folder" / "recordings"
    manifest = load_manifest(out)
    assert manifest.meta.partition == 0 and manifest.meta.classes == ()
    assert len(manifest.clips) == 4 and not (out / "partition.csv").exists()


def test_labels_do_not_apply_to_a_folder(recordings, tmp_path):
    with pytest.raises(CorpusError, match="a plain folder has no labels"):
        folder.read_corpus(recordings, "majority")
    with pytest.raises(CorpusError, match="folder not found"):
        folder.read_corpus(tmp_path / "absent")
