"""Face encoders, one module per family, registered in ``FACE_ENCODERS`` (extract.face_encoders.base):
importing the package imports every module in it, so a new encoder is one module."""
from common.registry import import_package_modules
from extract.face_encoders.base import FACE_ENCODERS, FaceEncoder, full_float32, make_face_encoder

import_package_modules(__name__)

__all__ = ["FACE_ENCODERS", "FaceEncoder", "full_float32", "make_face_encoder"]
