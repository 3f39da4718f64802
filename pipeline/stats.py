"""Stage: the corpus report of a manifest (``make stats``).

Reads the manifest of the selected corpus, label rule and partition (the same options as
pipeline.manifest; the manifest is built first when it is missing) and the media headers for the
durations. Prints the report and writes, beside the manifest: stats.txt, class_distribution.png
(clips per class and split) and stats_config.yaml (this config).
"""
from __future__ import annotations

import sys

from corpora.manifest import CorpusError, load_manifest, load_skipped
from corpora.report import clip_duration, plot_class_distribution, report_text
from pipeline.config import parse_config, save_config
from pipeline.manifest import ManifestConfig, build_manifest

REPORT_FILE = "stats.txt"
CHART_FILE = "class_distribution.png"
CONFIG_FILE = "stats_config.yaml"


def main(argv: list[str] | None = None) -> int:
    config = parse_config(ManifestConfig, argv, description=__doc__)
    try:
        folder, _ = build_manifest(config)
        manifest = load_manifest(folder)
    except CorpusError as error:
        print(f"stats: {error}", file=sys.stderr)
        return 2
    durations = {clip.clip_id: clip_duration(manifest, clip) for clip in manifest.clips}
    text = report_text(manifest, load_skipped(folder), durations)
    print(text, end="")
    (folder / REPORT_FILE).write_text(text)
    plot_class_distribution(manifest, folder / CHART_FILE)
    save_config(config, folder / CONFIG_FILE)
    print(f"stats: report and chart written to {folder / REPORT_FILE} and {folder / CHART_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
