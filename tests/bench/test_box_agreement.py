"""The box agreement script on real demo clips: the boxes extraction follows against detection
on every frame."""
from __future__ import annotations

from bench import box_agreement
from extract.spec import ExtractionSpec


def test_followed_boxes_agree_with_detection_on_every_frame(demo_corpus, face_model, capsys):
    videos = box_agreement.videos_of(demo_corpus, 4)
    assert len(videos) == 4
    figures = box_agreement.agreement(videos, ExtractionSpec())
    every, between = figures["all"], figures["between_detections"]
    assert figures["clips"] == 4 and every["frames"] == figures["kept_frames"] > 0
    # Two of three kept frames lie between detections; on the others both saw the same detection.
    assert 0.5 < between["frames"] / every["frames"] < 0.75
    assert every["mean"] > 0.95 and between["p5"] > 0.85 and figures["validity_disagreement"] < 0.05
    assert box_agreement.main(["--corpus-dir", str(demo_corpus), "--clips", "2"]) == 0
    assert "mean IoU" in capsys.readouterr().out
