"""Every encoder's weights: whether they are on this machine, their sha256, and where to put them.

Reads the model folder (data/models/, or $AUXFORMER_MODEL_DIR), the torch hub cache and the
Hugging Face cache; writes nothing and fetches nothing. ``make models`` prints this table after
fetching the pinned files (extract.model_files): weights other than the pinned ones are never
fetched by the pipeline, so the table says where each must be put by hand.
"""
from __future__ import annotations

import sys

from extract.audio_encoders import AUDIO_ENCODERS
from extract.face_encoders import FACE_ENCODERS
from extract.model_files import EncoderFile


def encoder_files() -> list[EncoderFile]:
    """Every registered encoder's rows: its own ``weights_files``."""
    return [row for registry in (FACE_ENCODERS, AUDIO_ENCODERS) for _, encoder in registry.items()
            for row in encoder.weights_files()]


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
    print(table(encoder_files()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
