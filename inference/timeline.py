"""A timeline of emotions for long recordings: a prediction per segment (inference.segments), and the
files ``make predict ARGS="--segments speech"`` writes.

<name>.csv holds a row per segment (the file, the segment's number, start and end seconds, its
seconds of speech, then the columns of a per-file prediction: emotion, the probability of each
class, modalities, face share...), or one row with the error for a recording that could not be
segmented. <name>.json holds the same per recording, with its speech intervals and its summary:
the share of speech time (of segment time, for fixed windows) given to each emotion.
<stem>.timeline.png draws each recording: the class probabilities of each segment, level over it,
the segments as bands, and below, the speech found and the pauses between.
"""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common import files
from extract.clip_media import media_between, note_lengths
from inference.predictor import Prediction, Predictor
from inference.segments import RecordingAudio, Segment, Segmenter, SegmentError

# Segments whose features are computed together (a batch for each encoder instead of a call a
# segment): a 570 s demo recording took 38 s at 821 MB, against 148 s at 758 MB one at a time
# and 32 s at 909 MB 16 at a time (README, "Long recordings").
SEGMENT_BATCH = 8


@dataclass
class SegmentPrediction:
    segment: Segment
    prediction: Prediction

    def csv_row(self, index: int, classes: list[str]) -> dict:
        row = self.prediction.csv_row(classes)
        return {"file": row.pop("file"), "segment": index, "start": round(self.segment.start, 3),
                "end": round(self.segment.end, 3), "speech_seconds": round(self.segment.speech_seconds, 3), **row}


@dataclass
class Timeline:
    file: str
    duration: float = 0.0
    segments: list[SegmentPrediction] = field(default_factory=list)
    speech: list[tuple[float, float]] = field(default_factory=list)  # speech intervals; [] for fixed windows
    error: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # decoding and tracking the whole recording

    def emotion_share(self, classes: list[str]) -> dict[str, float]:
        """Each class's share of the predicted segments' speech time."""
        seconds = {name: 0.0 for name in classes}
        for item in self.segments:
            if item.prediction.emotion:
                seconds[item.prediction.emotion] += item.segment.speech_seconds
        total = sum(seconds.values())
        return {name: value / total if total else 0.0 for name, value in seconds.items()}

    def as_dict(self, classes: list[str]) -> dict:
        return {"file": self.file, "duration": self.duration, "error": self.error,
                "speech_seconds": sum(end - start for start, end in self.speech), "emotion_share":
                self.emotion_share(classes), "speech": self.speech, "seconds": self.seconds,
                "segments": [{**asdict(s.segment), **asdict(s.prediction)} for s in self.segments]}


def predict_timelines(predictor: Predictor, paths: list[Path], segmenter: Segmenter) -> list[Timeline]:
    with predictor.extractor.open_detector() as detector, one_torch_thread():
        return [predict_timeline(predictor, path, detector, segmenter) for path in paths]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread meanwhile: a segment's tensors are too small to share between threads, and
    on a busy 2-core machine the threads' waiting made a 3-minute demo recording take 25.8 s instead
    of 7.1 s (README, "Long recordings")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def predict_timeline(predictor: Predictor, path: Path, detector, segmenter: Segmenter) -> Timeline:
    """The recording's face tracked once, then each segment predicted alone, a batch at a time; its
    sound is read in blocks (inference.segments.RecordingAudio), so memory does not grow with its length."""
    media = predictor.media(path, detector, with_audio=False)  # first: a file that cannot be decoded stops here
    if isinstance(media, Prediction):
        return Timeline(path.name, error=media.error)
    started = time.perf_counter()
    audio = RecordingAudio.scan(path, predictor.extractor.track.min_audio_samples)
    media.audio_note, media.seconds["audio"] = audio.note, time.perf_counter() - started
    if audio.usable:
        note_lengths(media, audio.seconds)
    if not (audio.usable or media.valid.any()):  # neither audio nor a face: the per-file prediction's error says why
        return Timeline(path.name, error=predictor.predict_media(path, media).error)
    duration = media.duration or audio.seconds  # the video's; the audio's when no frame could be read
    timeline = Timeline(path.name, duration, seconds=dict(media.seconds))
    try:
        segments, timeline.speech = segmenter(duration, audio, str(path))
    except SegmentError as error:
        timeline.error = str(error)
        return timeline
    minimum = predictor.extractor.track.min_audio_samples
    sounds = audio.between(segments) if audio.usable else itertools.repeat(None)
    for first in range(0, len(segments), SEGMENT_BATCH):
        batch = segments[first:first + SEGMENT_BATCH]
        parts = [media_between(media, segment.start, segment.end, next(sounds), minimum) for segment in batch]
        timeline.segments += map(SegmentPrediction, batch, predictor.predict_parts(path, parts))
    return timeline


def write_timelines(timelines: list[Timeline], classes: list[str], out_dir: Path, name: str,
                    summary: dict) -> list[Path]:
    """<name>.csv, <name>.json and a <stem>.timeline.png per recording; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [row for timeline in timelines for row in _rows(timeline, classes)]
    csv_path, json_path = out_dir / f"{name}.csv", out_dir / f"{name}.json"
    columns = list(SegmentPrediction(Segment(0, 0, 0), Prediction("")).csv_row(0, classes))
    files.write_csv(csv_path, columns, rows)
    files.write_text(json_path, json.dumps({**summary, "recordings": [t.as_dict(classes) for t in timelines]},
                                           indent=1))
    pictures = [plot_timeline(t, classes, out_dir / f"{Path(t.file).stem}.timeline.png")
                for t in timelines if t.segments]
    return [csv_path, json_path, *pictures]


def _rows(timeline: Timeline, classes: list[str]) -> list[dict]:
    if timeline.error:
        return [{"file": timeline.file, "error": timeline.error}]
    return [s.csv_row(index, classes) for index, s in enumerate(timeline.segments)]


def plot_timeline(timeline: Timeline, classes: list[str], path: Path) -> Path:
    """Class probabilities over time, level over each segment and broken at pauses; the segments as
    alternating bands with their emotion; the speech and the segments below."""
    figure = Figure(figsize=(min(24.0, max(8.0, timeline.duration / 4)), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    top, strip = figure.subplots(2, 1, sharex=True, height_ratios=[5, 1])
    segments = timeline.segments
    for index, item in enumerate(segments):
        top.axvspan(item.segment.start, item.segment.end, color="0.93" if index % 2 else "0.86", lw=0)
        if item.prediction.emotion:
            top.text((item.segment.start + item.segment.end) / 2, 1.02, item.prediction.emotion, ha="center",
                     va="bottom", fontsize=7)
    for name in classes:
        times, values = _steps(segments, name)
        top.plot(times, values, label=name)
    top.set(ylim=(0, 1.1), ylabel="probability", title=f"{timeline.file}: emotion per segment")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    for start, end in timeline.speech:
        strip.axvspan(start, end, ymin=0.55, ymax=0.95, color="0.2", lw=0)
    for item in segments:
        strip.axvspan(item.segment.start, item.segment.end, ymin=0.05, ymax=0.45, color="tab:blue", alpha=0.5, lw=0)
    strip.set(xlim=(0, max(timeline.duration, 1e-3)), yticks=[0.25, 0.75], xlabel="seconds",
              yticklabels=["segments", "speech" if timeline.speech else ""])
    with files.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=80, format="png")
    return path


def _steps(segments: list[SegmentPrediction], name: str) -> tuple[list[float], list[float]]:
    """A class's probability as a step line: each segment's from its start to its end (or to the next
    segment's start, when windows overlap), with a gap where a pause lies between two segments."""
    times, values = [], []
    for index, item in enumerate(segments):
        following = segments[index + 1].segment.start if index + 1 < len(segments) else item.segment.end
        probability = item.prediction.probabilities.get(name, float("nan"))
        times += [item.segment.start, min(item.segment.end, following)]
        values += [probability, probability]
        if following > item.segment.end:
            times.append(item.segment.end)
            values.append(float("nan"))
    return times, values


def format_timelines(timelines: list[Timeline], classes: list[str]) -> str:
    lines = []
    for timeline in timelines:
        if timeline.error:
            lines.append(f"{timeline.file}: error: {timeline.error}")
            continue
        shares = ", ".join(f"{name} {share:.0%}" for name, share in timeline.emotion_share(classes).items() if share)
        lines.append(f"{timeline.file}: {timeline.duration:.1f} s, {len(timeline.segments)} segments; {shares}")
        for s in timeline.segments:
            p = s.prediction
            what = (f"{p.emotion} {p.probabilities[p.emotion]:.2f} ({p.modalities}, faces {p.face_share:.0%})"
                    if p.emotion else f"error: {p.error}")
            lines.append(f"  {s.segment.start:7.2f}-{s.segment.end:7.2f} s  {what}{'  ' + p.note if p.note else ''}")
    return "\n".join(lines)
