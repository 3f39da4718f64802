"""A drawn face for the demo corpus, one frame at a time.

Each actor's face (shape, colouring, hair, framing, resting expression) comes from its
FaceStyle; each frame adds the emotion's expression along the clip's onset-apex-offset course,
lips opening on the syllables' vowels, small head motion, a slow change of lighting and sensor
noise. Faces are drawn in face coordinates (pixels from the face centre, y down), then rotated
and moved with the head.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from corpora.crema_d import VIDEO_FPS, VIDEO_SIZE, ClipName
from corpora.demo.actors import Actor, FaceStyle
from corpora.demo.design import FACE_CUES, FaceCues
from corpora.demo.timeline import ClipTimeline

SHIFT = 4  # fractional bits of drawing coordinates, so slow motion is smooth
SCALE = 1 << SHIFT
# Faces are drawn at half resolution and scaled up: four times cheaper to draw, and as soft as
# the low-bitrate camera video of the real corpus.
RENDER_SCALE = 0.5
NOISE_BANK_SIZE = 8
NOISE_SIGMA = 3.0
NOISE_OFFSET = 16  # noise is stored as uint8 around this value
SCLERA_CONTRAST = 40  # grey levels the eye white may be above the skin
LIGHT_SWING = 0.3  # brightness difference between the lit and the shaded side of the frame


@dataclass(frozen=True)
class Pose:
    dx: float
    dy: float
    angle_deg: float


class FaceRenderer:
    """Draws one actor's frames; holds what does not change between frames."""

    def __init__(self, actor: Actor, noise_bank: np.ndarray):
        self.style = actor.face
        self.background = _background(self.style)
        self.sclera = _sclera(self.style.skin)
        self.noise_bank = noise_bank

    def frames(self, clip: ClipName, timeline: ClipTimeline, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """The clip's frames, VIDEO_FPS per second, as I420 (YUV 4:2:0) uint8 arrays of
        shape (height * 3 / 2, width), the layout the video encoder takes."""
        n_frames = int(round(timeline.duration * VIDEO_FPS))
        t = np.arange(n_frames) / VIDEO_FPS
        cues = FACE_CUES[clip.emotion].scaled(timeline.face_intensity)
        expression = timeline.expression(t)
        speech = timeline.articulation(t)
        poses = _head_motion(t, self.style.head_sway, rng)
        light_balance = 0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(3, 6) + rng.uniform(0, 2 * np.pi))
        gain = 1.0 + 0.08 * np.sin(2 * np.pi * t / rng.uniform(2, 5) + rng.uniform(0, 2 * np.pi))
        blink_frame = int(rng.integers(n_frames)) if rng.random() < 0.6 else -10
        for i in range(n_frames):
            blink = max(0.0, 1.0 - abs(i - blink_frame) / 2.0)
            frame = self.background.copy()
            self.draw(frame, cues.scaled(expression[i]), speech[i], blink, poses[i])
            side = LIGHT_SWING * (light_balance[i] - 0.5)
            yield self._camera(frame, gain[i] * (1 + side), gain[i] * (1 - side), rng)

    def draw(self, frame: np.ndarray, cues: FaceCues, speech_opening: float, blink: float, pose: Pose) -> None:
        s = self.style
        a, b = s.half_width, s.half_height
        to_frame = _HeadTransform(s.centre, pose)
        _ellipse(frame, to_frame, (0, b * 1.95), (a * 2.3, b * 0.85), s.shirt)  # shoulders
        _poly(frame, to_frame, [(-0.42 * a, 0.6 * b), (0.42 * a, 0.6 * b), (0.45 * a, 1.3 * b), (-0.45 * a, 1.3 * b)],
              _shade(s.skin, 0.85))  # neck
        if s.hair_style == "long":
            _ellipse(frame, to_frame, (0, 0.05 * b), (1.18 * a, 1.12 * b), s.hair)
        for side in (-1, 1):  # ears
            _ellipse(frame, to_frame, (side * 0.98 * a, -0.02 * b), (0.14 * a, 0.24 * b), _shade(s.skin, 0.9))
        _ellipse(frame, to_frame, (0, 0), (a, b), s.skin)
        self._draw_hair(frame, to_frame)
        self._draw_eyes(frame, to_frame, cues, blink)
        self._draw_brows(frame, to_frame, cues)
        _polyline(frame, to_frame, [(0, -0.05 * b), (0.06 * a, 0.22 * b), (-0.06 * a, 0.27 * b)],
                  _shade(s.skin, 0.7), 2)  # nose
        self._draw_mouth(frame, to_frame, cues, speech_opening)

    def _draw_hair(self, frame, to_frame) -> None:
        s = self.style
        a, b = s.half_width, s.half_height
        if s.hair_style == "crew":
            _ellipse(frame, to_frame, (0, -0.8 * b), (0.92 * a, 0.3 * b), s.hair)
        else:
            _ellipse(frame, to_frame, (0, -0.78 * b), (1.02 * a, 0.38 * b), s.hair)
            _ellipse(frame, to_frame, (-0.35 * a, -0.62 * b), (0.5 * a, 0.16 * b), s.hair, angle=-18)

    def _draw_eyes(self, frame, to_frame, cues: FaceCues, blink: float) -> None:
        s = self.style
        a, b = s.half_width, s.half_height
        opening = s.eye_opening * b * max(1.0 + s.rest_eye_open + cues.eye_open, 0.15) * (1.0 - 0.9 * blink)
        half_width = s.eye_width * a
        for side in (-1, 1):
            cx, cy = side * s.eye_spacing * a, -s.eye_height * b
            # Shaded eye sockets: the dark band across the eyes that face detectors key on.
            _ellipse(frame, to_frame, (cx, cy - 0.02 * b), (1.45 * half_width, 2.6 * s.eye_opening * b),
                     _shade(s.skin, 0.7))
            _ellipse(frame, to_frame, (cx, cy), (half_width, opening), self.sclera)
            iris = min(0.5 * half_width, 0.95 * opening + 1.0)
            _ellipse(frame, to_frame, (cx, cy), (0.5 * half_width, iris), s.iris)
            _ellipse(frame, to_frame, (cx, cy), (0.2 * half_width, min(0.2 * half_width, iris)), (15, 15, 15))
            lid = np.stack([cx + half_width * _LID_STEPS, cy - opening * np.sqrt(1 - _LID_STEPS**2)], axis=1)
            _polyline(frame, to_frame, lid, _shade(s.skin, 0.45), 2)

    def _draw_brows(self, frame, to_frame, cues: FaceCues) -> None:
        s = self.style
        a, b = s.half_width, s.half_height
        raise_px = (s.rest_brow_raise + cues.brow_raise) * b
        tilt_px = (s.rest_brow_tilt + cues.brow_tilt) * 0.12 * b
        base_y = -(s.eye_height + s.brow_gap) * b - raise_px
        colour = _shade(s.hair, 0.5)
        for side in (-1, 1):
            inner_x = side * (s.eye_spacing - 0.7 * s.eye_width) * a
            outer_x = side * (s.eye_spacing + 1.1 * s.eye_width) * a
            middle = (0.5 * (inner_x + outer_x), base_y - 0.03 * b)
            _polyline(frame, to_frame, [(inner_x, base_y - tilt_px), middle, (outer_x, base_y + 0.5 * tilt_px)],
                      colour, s.brow_thickness)

    def _draw_mouth(self, frame, to_frame, cues: FaceCues, speech_opening: float) -> None:
        s = self.style
        a, b = s.half_width, s.half_height
        half_width = s.mouth_width * a * (1.0 + cues.mouth_width)
        y = s.mouth_height * b
        corner_lift = (s.rest_mouth_curve + cues.mouth_curve) * 0.14 * b
        opening = (cues.jaw_open + 0.22 * speech_opening) * 2 * half_width
        lip = s.lip_thickness
        upper_lift = cues.upper_lip * b
        corners = ((-half_width, y - corner_lift), (half_width, y - corner_lift))
        outer_top = _curve(corners, (0, y - 2.2 * lip - upper_lift))
        outer_bottom = _curve(corners, (0, y + opening + 2.4 * lip))
        _poly(frame, to_frame, outer_top + outer_bottom[::-1], s.lips)
        if opening > 1.0:
            inner_top = _curve(corners, (0, y - upper_lift))
            inner_bottom = _curve(corners, (0, y + opening))
            _poly(frame, to_frame, inner_top + inner_bottom[::-1], (35, 25, 60))
        else:
            _polyline(frame, to_frame, _curve(corners, (0, y)), _shade(s.lips, 0.6), 2)

    def _camera(self, frame: np.ndarray, left_light: float, right_light: float,
                rng: np.random.Generator) -> np.ndarray:
        """Light the frame (left and right brightness factors), scale it up to I420, add sensor noise."""
        light = np.round(128 * np.array([[left_light, right_light]])).astype(np.uint8)
        illumination = cv2.cvtColor(cv2.resize(light, frame.shape[1::-1], interpolation=cv2.INTER_LINEAR),
                                    cv2.COLOR_GRAY2BGR)
        small = cv2.cvtColor(cv2.multiply(frame, illumination, scale=1 / 128), cv2.COLOR_BGR2YUV_I420)
        planes = _upscale_i420(small, frame.shape[0])
        noise = self.noise_bank[rng.integers(len(self.noise_bank))]
        return cv2.subtract(cv2.add(planes, noise), NOISE_OFFSET)


def _upscale_i420(small: np.ndarray, small_height: int) -> np.ndarray:
    """Scale an I420 image up to VIDEO_SIZE plane by plane (half the work of scaling BGR)."""
    width, height = VIDEO_SIZE
    small_width = small.shape[1]
    chroma = small_height * small_width // 4
    out = np.empty((height * 3 // 2, width), np.uint8)
    out[:height] = cv2.resize(small[:small_height], VIDEO_SIZE, interpolation=cv2.INTER_LINEAR)
    flat_in, flat_out = small[small_height:].reshape(-1), out[height:].reshape(-1)
    for k in range(2):
        plane = flat_in[k * chroma:(k + 1) * chroma].reshape(small_height // 2, small_width // 2)
        scaled = cv2.resize(plane, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR)
        flat_out[k * scaled.size:(k + 1) * scaled.size] = scaled.reshape(-1)
    return out


def noise_bank(seed: int) -> np.ndarray:
    """Sensor-noise frames shared by all clips (drawing fresh noise per frame is the slow part)."""
    rng = np.random.default_rng([seed, 0x5E50])
    width, height = VIDEO_SIZE
    noise = rng.normal(NOISE_OFFSET, NOISE_SIGMA, (NOISE_BANK_SIZE, height * 3 // 2, width))
    return np.clip(noise, 0, 2 * NOISE_OFFSET).astype(np.uint8)


def _background(style: FaceStyle) -> np.ndarray:
    width, height = (int(v * RENDER_SCALE) for v in VIDEO_SIZE)
    mix = np.linspace(0, 1, height)[:, None, None]
    top, bottom = np.array(style.background_top), np.array(style.background_bottom)
    column = (1 - mix) * top + mix * bottom
    return np.ascontiguousarray(np.broadcast_to(column, (height, width, 3))).astype(np.uint8)


def _head_motion(t: np.ndarray, sway: float, rng: np.random.Generator) -> list[Pose]:
    phases = rng.uniform(0, 2 * np.pi, 3)
    rates = rng.uniform(0.3, 0.9, 3)
    dx = sway * np.sin(2 * np.pi * rates[0] * t + phases[0])
    dy = 0.6 * sway * np.sin(2 * np.pi * rates[1] * t + phases[1])
    angle = 1.2 * sway * np.sin(2 * np.pi * rates[2] * t + phases[2])
    return [Pose(*values) for values in zip(dx, dy, angle)]


class _HeadTransform:
    """Face coordinates to frame pixels for one head pose."""

    def __init__(self, centre: tuple[float, float], pose: Pose):
        angle = np.deg2rad(pose.angle_deg)
        self.angle_deg = pose.angle_deg
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        self.rotation = rotation * RENDER_SCALE
        self.offset = np.array([centre[0] + pose.dx, centre[1] + pose.dy]) * RENDER_SCALE

    def __call__(self, points) -> np.ndarray:
        return np.asarray(points, dtype=float) @ self.rotation.T + self.offset


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * SCALE).astype(np.int32)


def _ellipse(frame, to_frame, centre, axes, colour, angle: float = 0.0) -> None:
    c = _fixed(to_frame([centre]))[0]
    size = (int(axes[0] * RENDER_SCALE * SCALE), int(axes[1] * RENDER_SCALE * SCALE))
    cv2.ellipse(frame, tuple(int(v) for v in c), size, angle + to_frame.angle_deg, 0, 360, colour, -1,
                cv2.LINE_AA, SHIFT)


def _poly(frame, to_frame, points, colour) -> None:
    cv2.fillPoly(frame, [_fixed(to_frame(points))], colour, cv2.LINE_AA, SHIFT)


def _polyline(frame, to_frame, points, colour, thickness: int) -> None:
    thickness = max(1, int(round(thickness * RENDER_SCALE)))
    cv2.polylines(frame, [_fixed(to_frame(points))], False, colour, thickness, cv2.LINE_AA, SHIFT)


_CURVE_STEPS = np.linspace(0, 1, 9)
_LID_STEPS = np.linspace(-1, 1, 9)


def _curve(ends, control) -> list[tuple[float, float]]:
    """A quadratic Bezier curve from ends[0] to ends[1]."""
    (x0, y0), (x1, y1) = ends
    u = _CURVE_STEPS
    xs = (1 - u) ** 2 * x0 + 2 * u * (1 - u) * control[0] + u**2 * x1
    ys = (1 - u) ** 2 * y0 + 2 * u * (1 - u) * control[1] + u**2 * y1
    return list(zip(xs, ys))


def _sclera(skin) -> tuple[int, int, int]:
    """Eye white no brighter than a little above the skin, as a camera sees it in a shaded socket;
    a white far brighter than dark skin would turn the eye band bright, unlike any real face."""
    white = (235, 240, 240)
    room = _luminance(white) - _luminance(skin)
    return _mix(white, skin, float(np.clip(1 - SCLERA_CONTRAST / max(room, 1e-6), 0, 1)))


def _luminance(bgr) -> float:
    return 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]


def _mix(colour, other, weight: float) -> tuple[int, int, int]:
    """``colour`` moved by ``weight`` towards ``other``."""
    return tuple(int((1 - weight) * c + weight * o) for c, o in zip(colour, other))


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor)) for c in colour)
