"""Shared fixtures: a small demo corpus, generated once per test session, a demo clip stored turned
as phones store it, and the pinned face model."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from corpora.demo.generate import DemoConfig, generate
from extract.model_files import FACE_DETECTOR_SHORT_RANGE, ModelFileError, model_path

# Two actors (one of each sex), the levelled sentence IEO and one more: 44 clips, every emotion.
SMALL_DEMO = {"actors": 2, "sentences": 2, "seed": 7}
# Display rotations of the turned clips: counter-clockwise degrees, as PyAV's frame.rotation reads them.
ROTATIONS = (0, 90, -90, 180)


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    generate(DemoConfig(out_dir=out, workers=2, **SMALL_DEMO))
    return out


@pytest.fixture(scope="session")
def turned_clips(demo_corpus, tmp_path_factory) -> dict[int, Path]:
    """A demo clip as a phone records it in portrait (480x640, H.264 in MP4), once per rotation of
    ROTATIONS: ``rotation<degrees>.mp4``, its frames stored turned clockwise by that much and its
    stream tagged to be shown turned counter-clockwise by as much, upright (0: stored upright,
    untagged). Video only.

    Encoded losslessly, so that the clips differ in their orientation alone: at x264's default
    quality, its rounding (a third of a grey level on average) moved the face boxes by 1 to 2
    pixels and the FER embeddings by 15% of their mean magnitude, three times the tolerance that
    test_face_track allows between grey and colour crops."""
    folder = tmp_path_factory.mktemp("turned")
    with av.open(str(demo_corpus / "VideoFlash" / "1001_IEO_ANG_HI.flv")) as container:
        # Above and below the 480x360 picture, its edges repeated: the face as large as in the demo.
        frames = [cv2.copyMakeBorder(frame.to_ndarray(format="bgr24"), 140, 140, 0, 0, cv2.BORDER_REPLICATE)
                  for frame in container.decode(video=0)]
    return {rotation: _write_turned(folder / f"rotation{rotation}.mp4", frames, rotation) for rotation in ROTATIONS}


def _write_turned(path: Path, upright: list[np.ndarray], rotation: int) -> Path:
    stored = [np.ascontiguousarray(np.rot90(frame, -rotation // 90)) for frame in upright]  # k > 0: counter-clockwise
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width = stored[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0"}  # lossless
        if rotation:
            stream.set_display_rotation(rotation)  # the display matrix, in the mp4's track header
        for index, picture in enumerate(stored):
            frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def face_model() -> Path:
    """The pinned mediapipe face model; skips the module, saying why, when it is not on this machine."""
    try:
        return model_path(FACE_DETECTOR_SHORT_RANGE, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"mediapipe face model not available: {error}")
