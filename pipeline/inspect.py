"""Stage: a picture of what the model saw of a clip (``make inspect VIDEO=clip [run options]``).

Reads VIDEO (a file, or a folder: every video file in it) and, when the run that make eval would
find (or --run-dir) is trained, that run: its extraction is the one pictured and its prediction
is added. Without a run, the extraction the feature options name (--features, or each alone, as
make features takes them). Writes one PNG per clip (inference.inspection): sampled frames with
the face followed in green and other faces in red, the face crops the encoder receives, and with
a run the class probabilities; into --out-dir, default <run-dir>/inspect/, or data/inspect/.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_stage
from common.config import option, part
from common.errors import ProjectError
from extract.spec import ExtractionSpec, Extractor
from inference.inspection import inspect_clip
from inference.predictor import Predictor, video_files
from training.run_folder import CONFIG_FILE, RunSelection

DEFAULT_OUT = Path("data/inspect")


@dataclass
class InspectConfig(RunSelection):
    video: str = option("", "a video file, or a folder: every video file in it")
    features: ExtractionSpec = part(ExtractionSpec, "without a trained run: the feature options of make features "
                                                    "to picture, as one string", bundled=True)
    frames: int = option(8, "kept frames sampled over the clip for the contact sheet (1-32)")
    out_dir: str = option("", "where the pictures go; '' for <run-dir>/inspect/, or data/inspect/ without a run")
    device: str = option("auto", "auto (cuda when available), cpu or cuda")

    def __post_init__(self) -> None:
        if not 1 <= self.frames <= 32:
            raise InspectError(f"--frames must be within 1..32, got {self.frames}")


class InspectError(ProjectError):
    """Options that make no picture; the message names the option."""


def inspect(config: InspectConfig) -> int:
    paths, _ = video_files(config.video, follow_links=False)
    run = config.folder()
    predictor = Predictor(run, config.device) if (run / CONFIG_FILE).is_file() else None
    extractor = predictor.extractor if predictor else Extractor(config.features)
    out_dir = Path(config.out_dir) if config.out_dir else (run / "inspect" if predictor else DEFAULT_OUT)
    if predictor is None:
        print(f"inspect: no trained run at {run}: the extraction pictured is the one the feature options name, "
              "without a prediction", file=sys.stderr)
    for path in paths:
        inspection = inspect_clip(path, extractor, out_dir / f"{path.stem}.png", predictor, config.frames)
        faces = sum(box is not None for box in inspection.followed)
        print(f"inspect: {inspection.path} ({faces} of {len(inspection.steps)} frames with the face followed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("inspect", InspectConfig, inspect, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
