"""Stage: check an extraction folder (``make verify-features``); exit 1 on any problem.

Reads the extraction folder made with the feature options --features names (or --features-dir; the
options are also taken one by one, as make features takes them): its shards,
extraction.yaml, failures-*.csv, the corpus it was made from and the dataset's manifests.
Rewrites index.csv from the shards, checks every clip (extract.verify) and prints one table:
each check, and how many problems (or warnings) it found. Writes nothing else.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import run_stage
from common.config import option, part
from extract.spec import ExtractionSpec, find_extraction
from extract.verify import verify_checks


@dataclass
class VerifyConfig:
    dataset: str = option("demo", "check the extraction of this dataset made with the feature options --features "
                                  "names")
    features: ExtractionSpec = part(ExtractionSpec, "the feature options of make features that name the "
                                                    "extraction, as one string (default: make features' defaults)",
                                    bundled=True)
    features_dir: str = option("", "the extraction folder itself, data/features/<dataset>/<feature-config>")
    out_root: Path = option(Path("data/features"), "where extractions are")
    corpus_dir: str = option("", "the corpus, when not where the extraction recorded it")
    manifests_dir: Path = option(Path("data/manifests"), "where the dataset's manifests are")
    strict: bool = option(False, "count the warnings (failed clips, lengths that disagree, stale manifests) as "
                                 "problems too")


SHOWN = 20


def verify_features(config: VerifyConfig) -> int:
    folder = find_extraction(config.out_root, config.dataset, config.features, config.features_dir)
    checks = verify_checks(folder, config.corpus_dir, config.manifests_dir)
    counting = [check for check in checks if check.problems and (config.strict or not check.warning)]
    width = max(len(check.name) for check in checks)
    print(f"verify-features: {folder}")
    for check in checks:
        kind = "warnings" if check.warning and not config.strict else "problems"
        print(f"  {check.name:<{width}}  {f'{len(check.problems)} {kind}' if check.problems else 'ok'}")
    for check in checks:
        for problem in check.problems[:SHOWN]:
            print(f"verify-features: {problem}", file=sys.stderr)
        if len(check.problems) > SHOWN:
            print(f"verify-features: ... and {len(check.problems) - SHOWN} more ({check.name})", file=sys.stderr)
    if counting:
        print(f"verify-features: {sum(len(c.problems) for c in counting)} problems; FORCE=1 make features redoes "
              "the extraction, or delete the damaged shards named above and rerun make features", file=sys.stderr)
        return 1
    print("verify-features: complete and sound; next: make train")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("verify-features", VerifyConfig, verify_features, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
