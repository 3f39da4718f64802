"""Audio encoders, one module each, registered in ``AUDIO_ENCODERS`` (extract.audio_encoders.base):
importing the package imports every module in it, so a new encoder is one module."""
from common.registry import import_package_modules
from extract.audio_encoders.base import AUDIO_ENCODERS, AudioEncoder, AudioEncoderError, make_audio_encoder

import_package_modules(__name__)

__all__ = ["AUDIO_ENCODERS", "AudioEncoder", "AudioEncoderError", "make_audio_encoder"]
