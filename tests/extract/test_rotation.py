"""Video stored turned, with a display rotation in its container, as phones store portrait video:
its frames are read upright, as a player shows them, wherever they are converted (colour, grey,
the luma plane); the face is found as in the same clip stored upright, at the same place in the
upright picture, with the same embeddings; and the rotation applied is recorded with the features.
The clips are the conftest's ``turned_clips``."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from bench.box_agreement import iou
from extract.clip_media import ClipJob, TrackConfig, process_clip
from extract.engine import FeaturesConfig, extract
from extract.face_track import Video, luma_of, rotation_of, stretch_luma
from extract.shards import FeatureStore
from extract.spec import ExtractionSpec, Extractor

TURNED = (90, -90, 180)


def pictures(path, every: int = 5) -> dict[str, list[np.ndarray]]:
    """Every ``every``-th frame of the video as each conversion gives it."""
    found = {"bgr": [], "grey": [], "luma": [], "stored": []}
    with Video(path) as video:
        for index, (_, frame) in enumerate(video.frames()):
            if index % every == 0:
                luma, limited = luma_of(frame)
                found["bgr"].append(video.pixels(frame))
                found["grey"].append(video.pixels(frame, "gray"))
                found["luma"].append(stretch_luma(luma) if limited else luma)
                found["stored"].append(frame.to_ndarray(format="bgr24"))
    return found


def player_frames(path, every: int = 5) -> list[np.ndarray]:
    """The frames as OpenCV's own FFmpeg build shows them: it applies the display rotation by default."""
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_ORIENTATION_AUTO)
    frames, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(frame)
        index += 1
    capture.release()
    return frames


def mean_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    return float(np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(a, b)]))


def test_the_display_rotation_is_read_from_every_frame(turned_clips):
    for rotation, path in turned_clips.items():
        with Video(path) as video:
            frames = [frame for _, frame in video.frames()]
        assert len(frames) > 30
        # PyAV reads ffmpeg's angle of the display matrix, counter-clockwise; a half turn reads -180.
        assert {frame.rotation % 360 for frame in frames} == {rotation % 360}
        assert {rotation_of(frame) for frame in frames} == {rotation}
        assert (frames[0].height, frames[0].width) == ((480, 640) if rotation in (90, -90) else (640, 480))


@pytest.mark.parametrize("rotation", TURNED)
def test_frames_stored_turned_are_converted_upright_as_a_player_shows_them(turned_clips, rotation):
    upright, turned = pictures(turned_clips[0]), pictures(turned_clips[rotation])
    assert turned["bgr"][0].shape == upright["bgr"][0].shape == (640, 480, 3)
    # Both clips are lossless: the luma planes are the upright clip's exactly; colour is converted
    # from chroma subsampled on differently oriented pictures.
    for kind in ("grey", "luma"):
        assert all(np.array_equal(a, b) for a, b in zip(turned[kind], upright[kind])), kind
    assert mean_difference(turned["bgr"], upright["bgr"]) < 0.5
    assert mean_difference(player_frames(turned_clips[rotation]), turned["bgr"]) < 0.5
    if rotation == 180:  # the frame as stored has the upright shape, and differs
        assert mean_difference(turned["stored"], upright["bgr"]) > 10.0


def faces(path, spec: ExtractionSpec, grey: bool = True):
    extractor = Extractor(spec)
    track = TrackConfig(**{**extractor.track.__dict__, "grey": grey})
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob(path.stem, None, path), detector, track)
    return media, extractor.encoder.embed(media.crops)


def assert_same_faces(upright, turned) -> None:
    """The turned clip's face track is the upright clip's: the same kept frames with a face, boxes
    within a few pixels, embeddings within the tolerance of grey against colour crops
    (test_face_track)."""
    (upright, upright_embedding), (turned, turned_embedding) = upright, turned
    assert upright.valid.mean() > 0.9 and np.array_equal(turned.valid, upright.valid)
    valid = upright.valid
    assert iou(turned.boxes[valid], upright.boxes[valid]).min() > 0.9
    assert np.abs(turned.boxes[valid] - upright.boxes[valid]).max() < 4.0
    difference = np.abs(turned_embedding - upright_embedding).mean()
    assert difference < 0.05 * np.abs(upright_embedding).mean()


@pytest.mark.parametrize("rotation", TURNED)
def test_a_clip_stored_turned_gives_the_upright_clips_faces(turned_clips, face_model, rotation):
    spec = ExtractionSpec(face_rate=10, detect_every=1)  # a detection on each of 19 kept frames
    upright, turned = faces(turned_clips[0], spec), faces(turned_clips[rotation], spec)
    assert upright[0].rotation == 0 and turned[0].rotation == rotation
    assert not turned[0].video_note
    assert_same_faces(upright, turned)


def test_colour_crops_of_a_clip_stored_turned_are_the_upright_clips(turned_clips, face_model):
    spec = ExtractionSpec()  # the defaults: detections settle the boxes of the kept frames between them
    assert_same_faces(faces(turned_clips[0], spec, grey=False), faces(turned_clips[90], spec, grey=False))


@pytest.fixture(scope="module")
def extraction(turned_clips, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("turned-corpus")
    for path in turned_clips.values():
        shutil.copy(path, corpus)
    folder, report = extract(FeaturesConfig(dataset="folder", corpus_dir=str(corpus),
                                            out_root=tmp_path_factory.mktemp("features"), workers=1, device="cpu"))
    assert report.clips == len(turned_clips) and not report.failures
    return folder


def test_the_index_and_the_shards_record_each_clips_rotation(extraction, turned_clips):
    with FeatureStore(extraction) as store:
        assert {clip: row["rotation"] for clip, row in store.index.items()} == {
            f"rotation{rotation}": str(rotation) for rotation in turned_clips}
        upright = store.load("rotation0")
        for rotation in turned_clips:
            clip = store.load(f"rotation{rotation}")
            assert clip.rotation == rotation and clip.has_video
            # Boxes in the upright picture's coordinates, the upright clip's.
            assert np.abs(clip.boxes[clip.valid] - upright.boxes[clip.valid]).max() < 4.0
