"""``compare``: openSMILE's ComParE 2016 low-level descriptors (B. Schuller et al., "The
INTERSPEECH 2016 Computational Paralinguistics Challenge", Interspeech 2016), the larger standard
set beside eGeMAPS: 65 per frame at 100 a second (energy, spectral, MFCC, voicing, jitter and
shimmer descriptors), in ``opensmile.Smile.feature_names`` order. Offline, CPU."""
from __future__ import annotations

from extract.audio import SAMPLE_RATE
from extract.audio_encoders.base import AUDIO_ENCODERS
from extract.audio_encoders.egemaps import OpenSmileEncoder


@AUDIO_ENCODERS.register
class ComParEEncoder(OpenSmileEncoder):
    name = "compare"
    feature_set = "ComParE_2016"
    # Its longest analysis window (voicing and pitch) is 60 ms, as eGeMAPS's.
    min_samples = int(0.06 * SAMPLE_RATE)
