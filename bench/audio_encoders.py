"""The audio encoders' rows of the benchmark: the largest demo corpus extracted with each audio
encoder (the log-mel, the default, first) with the same clips and workers, in turn each round so
that a slow spell of a shared machine falls on all of them, each against the log-mel's time.
wav2vec2 runs a tiny model of the real architecture built in the bench's work folder
(extract.tiny_wav2vec2): its time is the plumbing's, not a real checkpoint's.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.fits import median_round
from bench.runner import BenchError, Runner

AUDIO_ENCODERS = ("logmel", "egemaps", "wav2vec2")
REFERENCE_ENCODER = "logmel"
TINY_WAV2VEC2_FOLDER = "models/tiny-wav2vec2"  # under the bench's work folder, kept for the next run


def encoder_list(text: str) -> list[str]:
    """The encoders a comma-separated --audio-encoders names, the log-mel first (what the others are
    set against) when any is named."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(AUDIO_ENCODERS))
    if unknown:
        raise BenchError(f"--audio-encoders takes {', '.join(AUDIO_ENCODERS)}, not {', '.join(unknown)}")
    if not names:
        return []
    return [REFERENCE_ENCODER] + [name for name in dict.fromkeys(names) if name != REFERENCE_ENCODER]


def tiny_wav2vec2(work_dir: Path) -> tuple[Path, int]:
    """The tiny wav2vec2's folder under ``work_dir`` (saved there unless it is there already) and its layers."""
    from extract.tiny_wav2vec2 import TINY_WAV2VEC2, saved_wav2vec2

    folder = work_dir / TINY_WAV2VEC2_FOLDER
    if not (folder / "config.json").is_file():
        saved_wav2vec2(folder)
    return folder, TINY_WAV2VEC2["num_hidden_layers"]


def extraction_values(encoder: str, work_dir: Path) -> dict:
    """The extraction options (extract.spec.ExtractionSpec's) that choose ``encoder``."""
    if encoder != "wav2vec2":
        return {"audio_encoder": encoder}
    folder, layers = tiny_wav2vec2(work_dir)
    return {"audio_encoder": encoder, "audio_weights": str(folder), "audio_layer": layers}


def run_audio_encoders(runner: Runner, corpus: Path, folder: Path, label: str, workers: int, rounds: int,
                       encoders: Sequence[str], work_dir: Path) -> list[dict]:
    """One record per encoder: every round's extraction of ``corpus`` with it, the encoders taken in turn."""
    values = {encoder: extraction_values(encoder, work_dir) for encoder in encoders}
    runs = {encoder: [] for encoder in encoders}
    for round_index in range(rounds):
        for encoder in encoders:
            spec = {"dataset": "demo", "corpus": str(corpus.resolve()), "workers": workers,
                    "out_root": str(folder / f"features-{encoder}-r{round_index}"), "extraction": values[encoder]}
            runs[encoder].append(runner.measure("extraction", f"extract-{label}-{encoder}-r{round_index}", spec))
    records = [encoder_record(encoder, label, workers, runs[encoder]) for encoder in encoders]
    for record in records:
        print(f"bench: extraction {label} with the {record['encoder']} audio encoder, {workers} worker(s): "
              f"{record['full']['seconds']:.1f} s (median of {rounds})", flush=True)
    return records


def encoder_record(encoder: str, label: str, workers: int, runs: Sequence[dict]) -> dict:
    """The median run and every run's seconds of one encoder."""
    return {"encoder": encoder, "label": label, "workers": workers, "full": median_round(runs),
            "rounds": [run["seconds"] for run in runs]}
