"""Stage: index a corpus as a manifest, the table of clips every later stage reads (``make manifest``).

Reads a corpus folder: the demo corpus (data/raw/demo) or CREMA-D (data/raw/crema-d) through the
CREMA-D reader, MSP-IMPROV (data/raw/msp-improv), RAVDESS (data/raw/ravdess, or the demo in its
layout, demo-ravdess: data/raw/demo-ravdess), your own clips with a labels CSV (labelled:
--corpus-dir and --labels, corpora.labelled), or a plain folder of videos (--corpus-dir), and
optionally a partition file in the reference format (--partition-file).
Writes data/manifests/<dataset>/<selection>/: manifest.csv, manifest.yaml (with this config),
skipped.csv and partition.csv (the partition in the reference format). The file formats are
described in corpora.manifest and corpora.partitions. A rerun with the same config does nothing;
--force (FORCE=1) rebuilds.
"""
from __future__ import annotations

import sys

from common.cli import run_stage
from corpora.manifest import load_manifest
from corpora.registry import ManifestConfig, build_manifest, summary


def manifest(config: ManifestConfig) -> int:
    out, written = build_manifest(config)
    state = "written" if written else "is current (FORCE=1 rebuilds it)"
    print(f"manifest: {state}: {summary(out, load_manifest(out).clips)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("manifest", ManifestConfig, manifest, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
