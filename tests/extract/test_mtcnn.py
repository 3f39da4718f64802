"""MTCNN (extract.mtcnn, --detector mtcnn) on real photographs: the astronaut's face is found where
it is, the cat is no face; and the cascade's box arithmetic."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.box_agreement import iou
from bench.photo_scenes import ASTRONAUT_FACE
from extract.face_detection import MtcnnFaceDetector, MtcnnOptions
from extract.model_files import ASTRONAUT_PHOTO, CAT_PHOTO, MTCNN_PNET, MTCNN_RNET, ModelFileError, model_path
from extract.mtcnn import Mtcnn, pyramid_scales, squared, suppressed


def local(pinned):
    try:
        return model_path(pinned, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"a pinned file is not on this machine (make setup fetches them): {error}")


@pytest.fixture(scope="module")
def detector() -> MtcnnFaceDetector:
    files = tuple(local(pinned) for pinned in MtcnnFaceDetector.model_files)
    with MtcnnFaceDetector.build(MtcnnOptions(), files) as opened:
        yield opened


def test_the_astronauts_face_is_found_where_it_is(detector):
    [face] = detector.detect(cv2.imread(str(local(ASTRONAUT_PHOTO))))
    found = np.array([[face.x, face.y, face.width, face.height]], np.float32)
    assert iou(found, np.array([ASTRONAUT_FACE], np.float32))[0] > 0.5 and face.score > 0.9


def test_a_cat_is_no_face(detector):
    assert detector.detect(cv2.imread(str(local(CAT_PHOTO)))) == []


def test_the_networks_files_are_checked_to_be_theirs():
    pnet, rnet = local(MTCNN_PNET), local(MTCNN_RNET)
    with pytest.raises(ModelFileError, match="is not PNet's state dict"):
        Mtcnn((rnet, rnet, rnet))
    with pytest.raises(ValueError):
        Mtcnn((pnet, rnet))


def test_options_out_of_range_are_refused():
    with pytest.raises(ModelFileError, match="--mtcnn-min-face must be within 12..10000"):
        MtcnnOptions(mtcnn_min_face=8)
    with pytest.raises(ModelFileError, match="--mtcnn-min-score must be within 0..1"):
        MtcnnOptions(mtcnn_min_score=float("nan"))


def test_the_pyramid_spans_the_smallest_face_to_the_shorter_side():
    scales = pyramid_scales(480, 640, 20)
    assert scales[0] == pytest.approx(12 / 20) and 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
    assert pyramid_scales(10, 640, 20) == []  # the picture is lower than the smallest face


def test_suppression_keeps_the_surest_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10, 0.8], [1, 1, 11, 11, 0.9], [20, 20, 30, 30, 0.7], [2, 2, 6, 6, 0.95]])
    assert suppressed(boxes, 0.5).tolist() == [3, 1, 2]  # the small box inside overlaps little by IoU
    assert suppressed(boxes, 0.7, against_smaller=True).tolist() == [3, 2]  # but wholly by the smaller area


def test_boxes_are_squared_about_their_centres():
    np.testing.assert_allclose(squared(np.array([[10.0, 20, 30, 60, 0.5]])), [[0, 20, 40, 60, 0.5]])
