"""Stage: check an extraction folder (``make verify-features``); exit 1 on any problem.

Reads the extraction folder made with the given feature options (or --features-dir): its shards,
extraction.yaml, failures-*.csv, and the corpus it was made from. Rewrites index.csv from the
shards and checks every clip (extract.verify). Writes nothing else.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_stage
from common.config import option
from extract.spec import ExtractionSpec, find_extraction
from extract.verify import verify


@dataclass
class VerifyConfig(ExtractionSpec):
    dataset: str = option("demo", "check the extraction of this dataset made with the feature options below")
    features_dir: str = option("", "the extraction folder itself, data/features/<dataset>/<feature-config>")
    out_root: Path = option(Path("data/features"), "where extractions are")
    corpus_dir: str = option("", "the corpus, when not where the extraction recorded it")
    strict: bool = option(False, "count failed clips (listed in failures-*.csv) as problems too")


def verify_features(config: VerifyConfig) -> int:
    folder = find_extraction(config.out_root, config.dataset, ExtractionSpec.of(config), config.features_dir)
    problems = verify(folder, config.strict, config.corpus_dir)
    for problem in problems[:50]:
        print(f"verify-features: {problem}", file=sys.stderr)
    if problems:
        print(f"verify-features: {len(problems)} problems in {folder}", file=sys.stderr)
        return 1
    print(f"verify-features: {folder} is complete and sound")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("verify-features", VerifyConfig, verify_features, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
