"""The decode-only floor (make features-floor) on a clip stored turned: it decodes every frame and
turns each upright, as extraction turns the frames it converts."""
from __future__ import annotations

import numpy as np

from extract.clip_media import ClipJob
from extract.face_track import decode_video
from pipeline.decode_floor import decode_clip, decode_clip_unconverted


def test_the_floor_turns_every_frame_of_a_clip_stored_turned_upright(turned_clips):
    upright = [picture for _, picture in decode_video(turned_clips[0])]
    turned = [picture for _, picture in decode_video(turned_clips[90])]
    assert len(turned) == len(upright) > 30 and turned[0].shape == (640, 480, 3)
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(turned, upright)]) < 0.5
    job = ClipJob("rotation90", None, turned_clips[90])
    assert decode_clip(job) == decode_clip_unconverted(job) == len(upright)
