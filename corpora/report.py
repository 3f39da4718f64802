"""The corpus report of a manifest: what is in it, what was left out, and why.

Tables of clips per class and split, per sex, per speaker, durations per split (from the WAV
headers, or the video container when a clip has no WAV), the clips a rule excluded and the files
the reader skipped; and a bar chart of the class distribution per split.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import av
import soundfile
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from corpora.manifest import SPLITS, ClipRecord, Manifest, SkippedFile

NO_SPLIT = "none"
COLUMNS_BY_SPLIT = (*SPLITS, NO_SPLIT)
NO_LABEL = "(no label)"
SKIPPED_SHOWN = 10


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned first column, right-aligned numbers."""
    cells = [[str(v) for v in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def split_of(clip: ClipRecord) -> str:
    return clip.split or NO_SPLIT


def clip_duration(manifest: Manifest, clip: ClipRecord) -> float | None:
    """Seconds, from the WAV header or else the video container; None when neither can be read."""
    if clip.audio_path.lower().endswith(".wav"):
        try:
            return soundfile.info(str(manifest.media(clip.audio_path))).duration
        except (soundfile.LibsndfileError, RuntimeError, OSError):
            return None
    if clip.video_path:
        try:
            with av.open(str(manifest.media(clip.video_path))) as container:
                return container.duration / 1_000_000 if container.duration is not None else None
        except (av.FFmpegError, OSError):
            return None
    return None


def class_counts(manifest: Manifest) -> dict[str, Counter]:
    """Split -> clips per class (``NO_LABEL`` for clips in a split without a hard label)."""
    counts = {split: Counter() for split in COLUMNS_BY_SPLIT}
    for clip in manifest.clips:
        if clip.split or not clip.excluded:
            counts[split_of(clip)][clip.label or NO_LABEL] += 1
    return counts


def _columns(manifest: Manifest) -> tuple[str, ...]:
    """The splits, and ``none`` when some clips are in no split without being excluded."""
    unsplit = any(not clip.split and not clip.excluded for clip in manifest.clips)
    return COLUMNS_BY_SPLIT if unsplit else SPLITS


def _class_table(manifest: Manifest) -> str:
    counts = class_counts(manifest)
    columns = _columns(manifest)
    unlabelled = sum(counts[s][NO_LABEL] for s in columns)
    names = [*manifest.meta.classes, *([NO_LABEL] if unlabelled else [])]
    rows = [[name, *(counts[s][name] for s in columns), sum(counts[s][name] for s in columns)] for name in names]
    rows.append(["total", *(sum(counts[s].values()) for s in columns), sum(sum(c.values()) for c in counts.values())])
    return table(["class", *columns, "total"], rows)


def _sex_table(manifest: Manifest) -> str:
    counted = [clip for clip in manifest.clips if clip.split or not clip.excluded]
    clips = Counter((clip.sex or "unknown", split_of(clip)) for clip in counted)
    speakers = {(clip.sex or "unknown", split_of(clip), clip.speaker) for clip in counted}
    speaker_counts = Counter((sex, split) for sex, split, _ in speakers)
    sexes = sorted({sex for sex, _ in clips} | {sex for sex, _ in speaker_counts})
    columns = _columns(manifest)
    rows = [[sex, *(f"{clips[sex, s]} / {speaker_counts[sex, s]}" for s in columns)] for sex in sexes]
    return table(["sex: clips / speakers", *columns], rows)


def _speaker_table(manifest: Manifest) -> str:
    used = Counter(clip.speaker for clip in manifest.clips if clip.split)
    excluded = Counter(clip.speaker for clip in manifest.clips if clip.excluded)
    rows = []
    for speaker in sorted({clip.speaker for clip in manifest.clips}, key=lambda s: (len(s), s)):
        clips = [clip for clip in manifest.clips if clip.speaker == speaker]
        splits = sorted({clip.split for clip in clips if clip.split}) or [NO_SPLIT]
        rows.append([speaker or "(unknown)", clips[0].sex or "unknown", ",".join(splits), used[speaker],
                     excluded[speaker]])
    return table(["speaker", "sex", "split", "clips in split", "excluded"], rows)


def _duration_table(manifest: Manifest, durations: dict[str, float | None]) -> str:
    rows = []
    for split in COLUMNS_BY_SPLIT:
        clips = [clip for clip in manifest.clips if split_of(clip) == split and (clip.split or not clip.excluded)]
        if not clips:
            continue
        known = [durations[clip.clip_id] for clip in clips if durations[clip.clip_id] is not None]
        if known:
            rows.append([split, len(known), f"{sum(known) / 60:.1f}", f"{sum(known) / len(known):.2f}",
                         f"{min(known):.2f}", f"{max(known):.2f}", len(clips) - len(known)])
        else:
            rows.append([split, 0, "-", "-", "-", "-", len(clips)])
    return table(["split", "clips", "minutes", "mean s", "min s", "max s", "unreadable"], rows)


def _modality_line(manifest: Manifest) -> str:
    audio_only = sum(1 for clip in manifest.clips if clip.audio_path and not clip.video_path)
    video_only = sum(1 for clip in manifest.clips if clip.video_path and not clip.audio_path)
    return f"single-modality clips (kept): {audio_only} audio only, {video_only} video only"


def _excluded_section(manifest: Manifest, skipped: list[SkippedFile]) -> str:
    reasons = Counter(clip.excluded for clip in manifest.clips if clip.excluded)
    lines = [f"excluded clips (in the manifest, in no split): {sum(reasons.values())}"]
    lines += [f"  {reason}: {count}" for reason, count in reasons.most_common()]
    lines.append(f"skipped files (not in the manifest, see skipped.csv): {len(skipped)}")
    lines += [f"  {s.path}: {s.reason}" for s in skipped[:SKIPPED_SHOWN]]
    if len(skipped) > SKIPPED_SHOWN:
        lines.append(f"  ... and {len(skipped) - SKIPPED_SHOWN} more")
    return "\n".join(lines)


def report_text(manifest: Manifest, skipped: list[SkippedFile], durations: dict[str, float | None]) -> str:
    meta = manifest.meta
    partition = f"partition file {meta.partition_file}" if meta.partition_file else (
        f"partition {meta.partition}" if meta.partition else "no partition")
    ratings = f" ({meta.ratings} ratings)" if meta.ratings else ""
    sections = [
        f"{meta.corpus} ({meta.dataset}) at {meta.corpus_root}: label rule {meta.label_rule}{ratings}, {partition}",
        f"clips in the manifest: {len(manifest.clips)}; in a split: {sum(1 for c in manifest.clips if c.split)}",
        _modality_line(manifest),
        "clips per class and split",
        _class_table(manifest),
        "clips and speakers per sex and split",
        _sex_table(manifest),
        "durations per split",
        _duration_table(manifest, durations),
        _excluded_section(manifest, skipped),
        "clips per speaker",
        _speaker_table(manifest),
    ]
    return "\n\n".join(sections) + "\n"


def plot_class_distribution(manifest: Manifest, path: Path) -> None:
    """Grouped bars: clips per class, one bar per split."""
    counts = class_counts(manifest)
    names = list(manifest.meta.classes) or [NO_LABEL]
    splits = [s for s in COLUMNS_BY_SPLIT if sum(counts[s].values())]
    figure = Figure(figsize=(max(6.0, 1.2 * len(names)), 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(splits))
    for n, split in enumerate(splits):
        positions = [i + (n - (len(splits) - 1) / 2) * width for i in range(len(names))]
        axes.bar(positions, [counts[split][name] for name in names], width, label=split)
    axes.set_xticks(range(len(names)), names)
    axes.set_ylabel("clips")
    axes.set_title(f"{manifest.meta.corpus} ({manifest.meta.dataset}): {manifest.meta.label_rule} labels per split")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
