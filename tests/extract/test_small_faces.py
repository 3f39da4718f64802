"""Small faces and wide frames: with the default detector (mediapipe-cascade), the face of a person
a tenth of the frame's height, and of each of two people in a wide shot, is found on nearly every
face step; a cat alone gets no face. The clips are H.264 videos made from real photographs
(bench.photo_scenes), read as any video is."""
from __future__ import annotations

import numpy as np
import pytest

from bench.box_agreement import iou
from bench.photo_scenes import Scene, scene_frames, write_clip
from common.config import from_values
from extract.clip_media import ClipJob, process_clip
from extract.face_detection import FaceBox, merged, square_tiles
from extract.model_files import PINNED_FILES, ModelFileError, model_path
from extract.spec import ExtractionSpec, Extractor

CLIP_FRAMES = 40  # 4 s at 10 frames a second: 20 face steps, 5 of them detections


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    try:
        for pinned in PINNED_FILES:
            model_path(pinned, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"a pinned file is not on this machine (make setup fetches them): {error}")
    return Extractor(from_values(ExtractionSpec, {}))


def followed(extractor: Extractor, scene: Scene, tmp_path):
    frames, truth = scene_frames(scene)
    path = write_clip(frames, tmp_path / f"{scene.name}.mp4")
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob(scene.name, None, path), detector, extractor.track)
    kept = np.rint(media.timestamps * 10).astype(int)  # the kept frames' numbers
    return media, [truth[frame] for frame in kept]


def best_overlap(box: np.ndarray, faces: np.ndarray) -> float:
    return max(float(iou(box[None], face[None])[0]) for face in faces)


@pytest.mark.parametrize("scene", [Scene(1280, 720, 0.1, 1, frames=CLIP_FRAMES),
                                   Scene(640, 480, 0.1, 1, frames=CLIP_FRAMES),
                                   Scene(720, 1280, 0.05, 1, frames=CLIP_FRAMES)], ids=lambda s: s.name)
def test_a_face_a_tenth_of_the_frame_or_less_is_followed_on_nearly_every_face_step(extractor, scene, tmp_path):
    media, truth = followed(extractor, scene, tmp_path)
    assert media.valid.mean() >= 0.9, media.video_note
    overlaps = [best_overlap(box, faces) for box, faces, valid in zip(media.boxes, truth, media.valid) if valid]
    assert min(overlaps) > 0.4
    assert media.crops is not None and len(media.crops) == media.valid.sum()


def test_in_a_wide_shot_of_two_people_one_is_followed_and_both_are_counted(extractor, tmp_path):
    media, truth = followed(extractor, Scene(1280, 720, 0.15, 2, frames=CLIP_FRAMES), tmp_path)
    assert media.valid.mean() >= 0.9 and media.faces == 2
    left = [best_overlap(box, faces[:1]) for box, faces, valid in zip(media.boxes, truth, media.valid) if valid]
    assert min(left) > 0.4  # the largest at the start is the left one (the right is lit darker): kept throughout


@pytest.mark.parametrize("shape", [(640, 480), (1280, 720)])
def test_a_cat_alone_gets_no_face(extractor, shape, tmp_path):
    media, _ = followed(extractor, Scene(*shape, people=0, nobody="cat", frames=CLIP_FRAMES), tmp_path)
    assert media.valid.mean() <= 0.1


def test_tiles_cover_the_picture_and_overlap():
    tiles = square_tiles(720, 1280, 360)
    covered = np.zeros((720, 1280), bool)
    for y, x in tiles:
        covered[y:y + 360, x:x + 360] = True
    assert covered.all()
    columns = sorted({x for _, x in tiles})
    assert all(b - a <= 360 * 0.75 for a, b in zip(columns, columns[1:]))


def test_a_face_seen_in_two_tiles_is_kept_once_and_two_faces_twice():
    face, cut, other = FaceBox(100, 100, 60, 60, 0.9), FaceBox(120, 100, 40, 60, 0.7), FaceBox(300, 100, 60, 60, 0.8)
    assert merged([cut, face, other]) == [face, other]
