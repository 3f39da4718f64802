"""``egemaps``: openSMILE's eGeMAPSv02 low-level descriptors through the ``opensmile`` package (25
numbers at 100 frames a second; the package's wheel carries its library and configs, so it runs
offline). Computed on the CPU, one clip at a time, whatever the device: extraction runs it in its
worker processes (``per_clip``). ``OpenSmileEncoder`` is the base of every openSMILE feature set."""
from __future__ import annotations

from importlib import metadata

import numpy as np

from extract.audio import SAMPLE_RATE
from extract.audio_encoders.base import AUDIO_ENCODERS, AudioEncoder

OPENSMILE_RATE = 100.0  # openSMILE's low-level descriptor configurations step 10 ms


class OpenSmileEncoder(AudioEncoder):
    """The low-level descriptors of one openSMILE feature set, in its ``feature_names`` order."""

    feature_set: str  # a member of opensmile.FeatureSet
    rate = OPENSMILE_RATE
    per_clip = True
    weights_note = "no weights (the opensmile package's own configuration)"

    def __init__(self, options, device: str = "cpu", expected_sha256: str = ""):
        import opensmile

        self.smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                                     feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self.dim = len(self.smile.feature_names)
        self.identity = f"opensmile {metadata.version('opensmile')} {self.feature_set} LowLevelDescriptors"

    def __call__(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return [self.smile.process_signal(clip, SAMPLE_RATE).to_numpy(np.float32) for clip in clips]


@AUDIO_ENCODERS.register
class EGeMAPSEncoder(OpenSmileEncoder):
    """openSMILE eGeMAPSv02 low-level descriptors (F. Eyben et al., IEEE Trans. Affective Computing
    7(2), 2016): 25 per frame (loudness, pitch, jitter, shimmer, formants, spectral slopes...)."""

    name = "egemaps"
    feature_set = "eGeMAPSv02"
    # The descriptors' longest window is 60 ms; shorter audio gives openSMILE nothing to frame.
    min_samples = int(0.06 * SAMPLE_RATE)
