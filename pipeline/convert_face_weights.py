"""Stage: a whole pickled face-encoder model as the state dict the pipeline reads (``make convert-face-weights``).

Reads SOURCE, a model saved whole with ``torch.save(model)``, as HSEmotion publishes its
EfficientNets (``enet_b2_8_best.pt``, ``enet_b0_8_best_afew.pt``). Writes its state dict to
--out (default: the encoder's file in the model folder, data/models/<its file name>) and prints
the new file's sha256.

Reading SOURCE unpickles it, which runs whatever code the file names: run this once, by hand, on
a file from a source you trust. Everywhere else the pipeline reads weights files as tensors only
(extract.model_files.load_tensors), so a file travelling with a run folder cannot run code.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_stage
from common.config import option
from extract.face_encoders import FACE_ENCODERS
from extract.face_encoders.hsemotion import EfficientNetEncoder, convert_pickled_model, load_efficientnet
from extract.model_files import ModelFileError, model_dir

CONVERTIBLE = [name for name, encoder in FACE_ENCODERS.items() if issubclass(encoder, EfficientNetEncoder)]


@dataclass
class ConvertFaceWeightsConfig:
    source: str = option("", "the pickled model file, e.g. enet_b2_8_best.pt from HSEmotion's repository")
    face_encoder: str = option("enet_b2", f"the encoder the file is for: {', '.join(CONVERTIBLE)}")
    out: str = option("", "where the state dict goes; '' for the encoder's file in the model folder")


def convert(config: ConvertFaceWeightsConfig) -> int:
    if config.face_encoder not in CONVERTIBLE:
        raise ModelFileError(f"--face-encoder {config.face_encoder}: only {', '.join(CONVERTIBLE)} weights are "
                             "published as pickled models")
    source = Path(config.source)
    if not source.is_file():
        raise ModelFileError(f"--source {config.source or '(none)'}: not a file; give the pickled model to convert")
    encoder = FACE_ENCODERS[config.face_encoder]
    target = Path(config.out) if config.out else model_dir() / encoder.weights_file
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = convert_pickled_model(source, target)
    load_efficientnet(target, encoder.architecture, encoder.embedding_dim)  # the state fills the network
    print(f"convert-face-weights: {target} (sha256 {digest}), a {encoder.architecture} state dict")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("convert-face-weights", ConvertFaceWeightsConfig, convert, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
