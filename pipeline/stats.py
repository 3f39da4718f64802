"""Stage: the corpus report of a manifest (``make stats``).

Reads the manifest of the selected corpus, label rule and partition (the same options as
pipeline.manifest; the manifest is built first when it is missing) and the media headers for the
durations. Prints the report and writes, beside the manifest: stats.txt, class_distribution.png
(clips per class and split) and stats_config.yaml (this config).
"""
from __future__ import annotations

import sys

from common import files
from common.cli import run_stage
from common.config import save_config
from corpora.manifest import SKIPPED_FILE, load_manifest, load_skipped
from corpora.registry import ManifestConfig, build_manifest
from corpora.report import clip_duration, plot_class_distribution, report_text

REPORT_FILE = "stats.txt"
CHART_FILE = "class_distribution.png"
CONFIG_FILE = "stats_config.yaml"


def stats(config: ManifestConfig) -> int:
    folder, _ = build_manifest(config)
    manifest = load_manifest(folder)
    durations = {clip.clip_id: clip_duration(manifest, clip) for clip in manifest.clips}
    skipped = load_skipped(folder)
    text = report_text(manifest, skipped, durations)
    print(text, end="")
    files.write_text(folder / REPORT_FILE, text)
    plot_class_distribution(manifest, folder / CHART_FILE)
    save_config(config, folder / CONFIG_FILE)
    if skipped:
        print(f"stats: {len(skipped)} files of the corpus are no clip and were skipped; the list, with why: "
              f"{folder / SKIPPED_FILE}")
    print(f"stats: report and chart written to {folder / REPORT_FILE} and {folder / CHART_FILE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage("stats", ManifestConfig, stats, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
