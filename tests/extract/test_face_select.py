"""One person per clip: the track starts with the largest (or the most central) face and follows
that person by overlap and nearness, never jumping to another face, whatever their sizes do."""
from __future__ import annotations

import av
import numpy as np

from common.config import from_values
from extract.clip_media import ClipJob, process_clip
from extract.face_detection import FaceBox
from extract.face_track import FaceSelector, decode_video
from extract.spec import ExtractionSpec, Extractor

FRAME = (360, 960, 3)


def face(x: float, size: float, y: float = 100.0) -> FaceBox:
    return FaceBox(x, y, size, size, 0.9)


def test_the_largest_face_at_the_start_is_followed_when_the_other_grows_larger():
    selector = FaceSelector("largest")
    followed = [selector.choose([face(100, 80), face(600, 60)], FRAME)]
    for step in range(1, 6):  # the right face grows past the left one
        followed.append(selector.choose([face(100 + 5 * step, 80), face(600, 60 + 20 * step)], FRAME))
    assert all(box.x < 300 for box in followed) and selector.most_faces == 2


def test_two_faces_that_cross_are_told_apart_by_their_motion():
    selector = FaceSelector("largest")
    followed = []
    for step in range(9):  # A moves right, B left, crossing at step 4
        a, b = face(100 + 80 * step, 90), face(740 - 80 * step, 70)
        followed.append(selector.choose([b, a], FRAME))
    assert [box.width for box in followed] == [90] * 9


def test_a_face_far_from_the_track_is_another_person_and_never_taken():
    selector = FaceSelector("largest")
    selector.choose([face(100, 80)], FRAME)
    assert selector.choose([face(700, 90)], FRAME) is None  # the followed person left; the other is not them
    assert selector.choose([face(130, 80), face(700, 90)], FRAME).x == 130


def test_the_central_rule_starts_with_the_face_nearest_the_middle():
    selector = FaceSelector("central")
    assert selector.choose([face(50, 120), face(440, 60, y=150)], FRAME).x == 440


def side_by_side(demo_corpus, out):
    """A wide clip of two demo faces, the left one at half size: two people in view."""
    left, right = (demo_corpus / "VideoFlash" / f"{name}.flv" for name in ("1001_IEO_NEU_XX", "1002_IEO_HAP_LO"))
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 960, 360, "yuv420p"
        for (_, a), (_, b) in zip(decode_video(left), decode_video(right)):
            small = a[::2, ::2]
            frame = np.zeros((360, 960, 3), np.uint8)
            frame[90:90 + small.shape[0], 0:small.shape[1]] = small
            frame[:, 480:] = b
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    return out


def test_a_clip_with_two_people_follows_the_largest_throughout_and_says_there_were_two(demo_corpus, tmp_path):
    video = side_by_side(demo_corpus, tmp_path / "two.mp4")
    # Haar's cascade, which scans the whole frame at full resolution: BlazeFace short range, which reads
    # the frame at 128x128, misses the smaller face of so wide a frame (issue of small faces, README).
    extractor = Extractor(from_values(ExtractionSpec, {"detect_every": 1, "detector": "haar"}))
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob("two", None, video), detector, extractor.track)
    boxes = media.boxes[media.valid]
    assert media.faces == 2 and len(boxes) > 0.9 * len(media.valid)
    assert (boxes[:, 0] + boxes[:, 2] / 2 > 480).all()  # the right, larger face, never the left one
