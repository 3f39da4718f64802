"""Following the face on a sample of the frames, on real demo clips: which frames are kept and
their times, the boxes between detections, crops cut as the video is read, the pictures
converted once per video, the grey picture read from the luma plane, and crops embedded where
they are made."""
from __future__ import annotations

import math

import numpy as np
import pytest

from extract.clip_media import ClipJob, TrackConfig, embed_crops, process_clip
from extract.face_track import TrackCrops, Video, crop_face, fill_gaps, grey_of, sampling_step
from extract.spec import ExtractionSpec, Extractor

CLIP = "1001_IEO_ANG_HI"



def video_of(corpus, clip_id: str = CLIP):
    return corpus / "VideoFlash" / f"{clip_id}.flv"


def frame_times(path) -> tuple[list[float], float]:
    with Video(path) as video:
        return [seconds for seconds, _ in video.frames()], video.fps


def test_sampling_step_follows_the_rate_and_never_skips_below_one():
    assert sampling_step(30.0, 10.0) == 3
    assert sampling_step(30.0, 15.0) == 2
    assert sampling_step(29.97, 10.0) == 3
    assert sampling_step(25.0, 10.0) == 2  # 12.5 a second: the nearest whole step
    assert sampling_step(30.0, 60.0) == 1  # more than the video has: every frame
    assert sampling_step(30.0, 0.0) == 1 and sampling_step(0.0, 10.0) == 1  # every frame; no rate known


def test_one_converter_per_video_gives_pyav_own_pixels(demo_corpus):
    with Video(video_of(demo_corpus)) as video:
        for index, (_, frame) in enumerate(video.frames()):
            if index % 7:
                continue
            for pixel_format in ("bgr24", "rgb24", "gray"):
                assert np.array_equal(video.pixels(frame, pixel_format), frame.to_ndarray(format=pixel_format))


def test_grey_from_the_luma_plane_is_swscale_grey(demo_corpus):
    with Video(video_of(demo_corpus)) as video:
        frames = [frame for index, (_, frame) in enumerate(video.frames()) if index % 10 == 0]
    for frame in frames:
        assert frame.format.name == "yuv420p"  # limited range: the luma is stretched
        assert np.array_equal(grey_of(frame), frame.to_ndarray(format="gray"))
        full_range = frame.reformat(format="yuvj420p")  # full range: the luma plane as it is
        assert np.array_equal(grey_of(full_range), full_range.to_ndarray(format="gray"))


def test_faces_are_followed_ten_times_a_second_at_the_frames_own_times(demo_corpus, face_model):
    extractor = Extractor(ExtractionSpec(face_rate=10, detect_every=3))  # detection on every 3rd kept frame
    times, fps = frame_times(video_of(demo_corpus))
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob(CLIP, None, video_of(demo_corpus)), detector, extractor.track)
    assert fps == 30.0 and media.frames == len(times)
    kept = math.ceil(len(times) / 3)
    assert len(media.valid) == kept and media.valid.all()
    np.testing.assert_array_equal(media.timestamps, times[::3])
    assert media.fps == 10.0 and media.duration == pytest.approx(len(times) / 30)
    assert media.crops.shape == (kept, 64, 64, 1)  # grey crops: the fer encoder reads grey
    assert len(media.detection_scores) == math.ceil(kept / 3)  # on kept frames 0, 3, 6, ...
    for index in range(1, kept - 1):  # between detections, boxes lie between the detected ones
        if index % 3 and index < 3 * ((kept - 1) // 3):
            before, after = media.boxes[3 * (index // 3)], media.boxes[3 * (index // 3 + 1)]
            assert np.all(media.boxes[index] >= np.minimum(before, after) - 1e-3)
            assert np.all(media.boxes[index] <= np.maximum(before, after) + 1e-3)


def test_by_default_faces_are_followed_on_every_eighth_frame_of_a_30_fps_video(demo_corpus, face_model):
    extractor = Extractor(ExtractionSpec())
    times, _ = frame_times(video_of(demo_corpus))
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob(CLIP, None, video_of(demo_corpus)), detector, extractor.track)
    # --face-rate 4: every round(30 / 4) = 8th frame, 3.75 a second; detection on every 4th of those.
    assert media.fps == 3.75 and len(media.valid) == math.ceil(len(times) / 8)
    np.testing.assert_array_equal(media.timestamps, times[::8])
    assert len(media.detection_scores) == math.ceil(len(media.valid) / 4)


def test_face_rate_zero_follows_every_frame(demo_corpus, face_model):
    spec = ExtractionSpec(face_rate=0)
    extractor = Extractor(spec)
    times, _ = frame_times(video_of(demo_corpus))
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob(CLIP, None, video_of(demo_corpus)), detector, extractor.track)
    assert len(media.valid) == media.frames == len(times) and media.fps == 30.0
    np.testing.assert_array_equal(media.timestamps, times)
    assert len(media.detection_scores) == math.ceil(len(times) / spec.detect_every)


def test_colour_crops_for_an_encoder_that_reads_colour(demo_corpus, face_model):
    extractor = Extractor(ExtractionSpec())
    track = TrackConfig(**{**extractor.track.__dict__, "grey": False})
    with extractor.open_detector() as detector:
        grey = process_clip(ClipJob(CLIP, None, video_of(demo_corpus)), detector, extractor.track)
        colour = process_clip(ClipJob(CLIP, None, video_of(demo_corpus)), detector, track)
    assert colour.crops.shape == (*grey.crops.shape[:3], 3)
    np.testing.assert_allclose(colour.boxes, grey.boxes, atol=1e-3)  # the detector saw the same picture
    # The luma grey differs from OpenCV's grey of the BGR picture only by rounding and clipping.
    embedded_grey, embedded_colour = extractor.encoder.embed(grey.crops), extractor.encoder.embed(colour.crops)
    assert np.abs(embedded_grey - embedded_colour).mean() < 0.05 * np.abs(embedded_colour).mean()


def test_crops_of_several_clips_embedded_together_are_each_clips_own(demo_corpus, face_model):
    extractor = Extractor(ExtractionSpec())
    videos = sorted((demo_corpus / "VideoFlash").glob("*.flv"))[:3]
    with extractor.open_detector() as detector:
        clips = [process_clip(ClipJob(path.stem, None, path), detector, extractor.track) for path in videos]
        embedded = [process_clip(ClipJob(path.stem, None, path), detector, extractor.track) for path in videos]
    embed_crops(embedded, extractor.encoder)
    for crops, together in zip(clips, embedded):
        assert together.crops is None and together.embedding.shape == (int(crops.valid.sum()), 135)
        assert together.seconds["embed"] > 0
        np.testing.assert_allclose(together.embedding, extractor.encoder.embed(crops.crops), atol=1e-4)
    from_crops, from_worker = extractor.features(clips), extractor.features(embedded)
    for a, b in zip(from_crops, from_worker):
        np.testing.assert_allclose(b.embedding, a.embedding, atol=1e-4)


def test_grey_crops_cut_from_the_luma_plane_match_crops_of_the_grey_picture(demo_corpus, face_model):
    extractor = Extractor(ExtractionSpec(face_rate=10))
    with extractor.open_detector() as detector:
        media = process_clip(ClipJob(CLIP, None, video_of(demo_corpus)), detector, extractor.track)
    with Video(video_of(demo_corpus)) as video:
        greys = [grey_of(frame) for index, (_, frame) in enumerate(video.frames()) if index % 3 == 0]
    track = extractor.track
    for index in np.flatnonzero(media.valid)[:8]:
        expected = crop_face(greys[index], media.boxes[index], track.crop_size, track.crop_margin)
        # Stretching after the interpolation instead of before: a grey level of rounding apart, more
        # only where the luma lies outside 16..235 (black and white are clipped before or after).
        difference = np.abs(media.crops[index, :, :, 0].astype(int) - expected)
        assert difference.mean() < 0.5 and np.mean(difference > 1) < 0.01


def test_boxes_are_interpolated_across_short_gaps_held_at_the_ends_and_none_across_long_ones():
    boxes = np.zeros((12, 4), np.float32)
    detected = np.zeros(12, bool)
    for index, x in ((2, 10.0), (4, 20.0), (10, 50.0)):
        boxes[index], detected[index] = (x, 0, 8, 8), True
    filled, valid = fill_gaps(boxes, detected, max_gap_frames=2)
    assert valid.tolist() == [True, True, True, True, True, False, False, False, False, False, True, True]
    assert filled[3, 0] == 15.0  # halfway between the detections either side
    assert filled[0, 0] == 10.0 and filled[11, 0] == 50.0  # held from the nearest detection
    assert np.isnan(filled[5:10]).all()  # 6 frames between two detections: none, even beside one


def _pattern(rng, frames: int) -> list[bool]:
    """Detections at random, in runs and gaps of every length, as faces come and go."""
    detected, state = [], bool(rng.integers(2))
    while len(detected) < frames:
        detected += [state and bool(rng.random() < 0.7)] * int(rng.integers(1, 12))
        state = not state
    return detected[:frames]


@pytest.mark.parametrize("max_gap", [0, 1, 2, 5, 9])
def test_crops_cut_while_reading_are_those_of_the_whole_track_and_few_pictures_are_held(max_gap):
    rng = np.random.default_rng(max_gap)
    for _ in range(40):
        frames = int(rng.integers(1, 90))
        pictures = rng.integers(0, 256, (frames, 24, 32), np.uint8)
        detected = _pattern(rng, frames)
        found = [np.array([rng.uniform(-6, 20), rng.uniform(-6, 12), rng.uniform(4, 16), rng.uniform(4, 16)],
                          np.float32) if hit else None for hit in detected]

        def cut(picture, box):
            return crop_face(picture, box, 12, 0.2)

        track, most_held = TrackCrops(max_gap, cut), 0
        for picture, box in zip(pictures, found):
            track.add(picture, box)
            most_held = max(most_held, track.held)
        boxes, valid = track.finish()

        expected_boxes, expected_valid = fill_gaps(
            np.stack([box if box is not None else np.zeros(4, np.float32) for box in found]),
            np.array(detected), max_gap)
        assert np.array_equal(valid, expected_valid)
        assert np.array_equal(boxes, expected_boxes, equal_nan=True)
        expected_crops = [cut(pictures[i], expected_boxes[i]) for i in np.flatnonzero(expected_valid)]
        assert len(track.crops) == len(expected_crops)
        assert all(np.array_equal(a, b) for a, b in zip(track.crops, expected_crops))
        assert most_held <= max_gap + 1

