"""make inspect: one PNG per clip, whose green boxes are the track's boxes on the sampled frames
and whose red ones are the other faces the detector found there; with a run, its probabilities."""
from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from common.config import from_values
from extract.clip_media import ClipJob, process_clip
from extract.spec import ExtractionSpec, Extractor
from inference.inspection import inspect_clip
from pipeline import inspect as inspect_stage
from tests.extract.test_face_select import side_by_side


def test_the_picture_draws_the_tracks_boxes_and_the_other_faces(demo_corpus, tmp_path):
    video = side_by_side(demo_corpus, tmp_path / "two.mp4")
    extractor = Extractor(from_values(ExtractionSpec, {"detector": "haar", "detect_every": 1}))
    inspection = inspect_clip(video, extractor, tmp_path / "two.png", frames=6)
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob("two", None, video), detector, extractor.track)
    assert len(inspection.steps) == 6 and inspection.crops > 0
    for step, followed in zip(inspection.steps, inspection.followed):
        np.testing.assert_array_equal(followed, media.boxes[step])
    assert all(box.x + box.width / 2 < 480 for others in inspection.others for box in others)  # the left face
    assert any(inspection.others)
    picture = matplotlib.image.imread(tmp_path / "two.png")
    assert picture.ndim == 3 and picture.shape[0] > 200


@pytest.mark.usefixtures("face_model")
def test_make_inspect_without_a_run_writes_a_picture_per_clip(demo_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    clip = demo_corpus / "VideoFlash" / "1001_IEO_NEU_XX.flv"
    assert inspect_stage.main(["--video", str(clip), "--device", "cpu", "--frames", "4"]) == 0
    assert (tmp_path / "data" / "inspect" / "1001_IEO_NEU_XX.png").is_file()
    out = capsys.readouterr()
    assert "4 of 4 frames with the face followed" in out.out and "no trained run" in out.err
    assert inspect_stage.main(["--video", str(clip), "--frames", "0"]) == 2
    assert "--frames must be within 1..32" in capsys.readouterr().err
