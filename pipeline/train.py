"""Stage: train AuxFormer or a baseline on one partition of a corpus (``make train``).

Reads the corpus manifest (built first when missing) and the extraction made with the feature
options given (or --features-dir); writes runs/<dataset>/<split>/<model>/, where <split> is
p<k> for partition k under the dataset's default label rule and ratings (with the rule or
ratings appended otherwise) and file-<name> for a partition file. training.stage says what is
read and written, training.run_folder what the run folder holds. Settings come from the
dataset's preset (training/presets/) unless --preset says otherwise; options override it.

Distributed: the same command under ``torchrun --nproc_per_node=N`` (and torchrun's multi-node
options) trains with DistributedDataParallel, one process per GPU or, on CPU, N processes;
only rank 0 writes (training.distributed).
"""
from __future__ import annotations

import sys

from common.cli import run_stage
from training.distributed import close_distributed, init_distributed
from training.stage import TrainStageConfig, run_training


def train(config: TrainStageConfig) -> int:
    distributed = init_distributed(config.training.device)
    try:
        run = run_training(config, distributed)
    finally:
        close_distributed()
    if distributed.is_main:
        print(f"train: run folder {run}; next: make eval (same DATASET, PARTITION, MODEL)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("train", TrainStageConfig, train, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
