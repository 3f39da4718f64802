"""The benchmark's arithmetic, pure functions of the measured figures: least-squares fits of
seconds on clips and frames (``CostFit``, ``fit_costs``, the terms a series can tell apart), the
fits of extraction and of training, and their projections to the full corpora (``CREMA_D``,
``MSP_IMPROV``) on 2 CPU cores and on one GPU machine.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PROJECTION_CORES = 2


@dataclass(frozen=True)
class FullCorpus:
    """A corpus the figures are projected to."""

    name: str
    clips: int
    frames: int  # 0: unknown, projected from the demo's mean clip length
    frames_source: str
    split_shares: dict  # share of clips in train, development, test
    split_source: str


CREMA_D = FullCorpus("CREMA-D", 7442, 590_000, "the issue's figure: about 79 frames per clip at 30 fps",
                     {"train": 63 / 91, "development": 14 / 91, "test": 14 / 91},
                     "63/14/14 of 91 actors (the published partitions, corpora.partitions)")
MSP_IMPROV = FullCorpus("MSP-IMPROV", 8438, 0, "", {"train": 4 / 6, "development": 1 / 6, "test": 1 / 6},
                        "4/1/1 of 6 sessions (corpora.msp_improv; sessions taken as equal in size)")


def worker_counts(workers: int) -> list[int]:
    return sorted({1, max(workers, 1)})


def median_round(figures: Sequence[dict]) -> dict:
    """The run whose seconds are the median (the lower of the middle two for an even count)."""
    return sorted(figures, key=lambda f: f["seconds"])[(len(figures) - 1) // 2]


def largest(records: Sequence[dict], series: str = "count", workers: int | None = None) -> dict | None:
    chosen = [r for r in records if r["series"] == series and (workers is None or r["workers"] == workers)]
    return max(chosen, key=lambda r: (r["full"]["frames"], r["workers"]), default=None)


@dataclass(frozen=True)
class CostFit:
    """seconds = fixed + per_clip * clips + per_frame * frames, fitted by non-negative least squares."""

    fixed: float
    per_clip: float
    per_frame: float
    terms: tuple[str, ...]
    points: int
    max_relative_residual: float

    def seconds(self, clips: float, frames: float = 0.0) -> float:
        return self.fixed + self.per_clip * clips + self.per_frame * frames


def fit_costs(points: Sequence[tuple[float, float, float]], terms: Sequence[str]) -> CostFit | None:
    """Fit (clips, frames, seconds) points with the given terms ("fixed", "clip", "frame").

    Non-negative, as no part of the work can take negative time; None when there are fewer
    points than terms. Columns are scaled to 1 before the fit for a well-conditioned problem.
    """
    from scipy.optimize import nnls

    if len(points) < len(terms):
        return None
    columns = {"fixed": [1.0] * len(points), "clip": [p[0] for p in points], "frame": [p[1] for p in points]}
    design = np.array([columns[term] for term in terms], dtype=float).T
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    seconds = np.array([p[2] for p in points], dtype=float)
    solution, _ = nnls(design / scale, seconds)
    coefficients = dict(zip(terms, solution / scale))
    predicted = design @ (solution / scale)
    residual = float(np.max(np.abs(predicted - seconds) / np.maximum(seconds, 1e-9)))
    return CostFit(coefficients.get("fixed", 0.0), coefficients.get("clip", 0.0), coefficients.get("frame", 0.0),
                   tuple(terms), len(points), residual)


def _varies(values: Sequence[float]) -> bool:
    """By over 20%: enough to tell two costs apart in a noisy measurement."""
    values = [v for v in values if v > 0]
    return bool(values) and max(values) > 1.2 * min(values)


def extraction_terms(points: Sequence[tuple[float, float, float]]) -> tuple[str, ...]:
    """Per-clip and per-frame costs can only be told apart when the clip length varies."""
    return ("fixed", "clip", "frame") if _varies([frames / clips for clips, frames, _ in points if clips]) \
        else ("fixed", "frame")


def clip_terms(points: Sequence[tuple[float, float, float]]) -> tuple[str, ...]:
    """A fixed cost can only be told apart from the per-clip one when the clip count varies; otherwise
    the fit is proportional, the fixed costs folded into the per-clip one (an upper bound)."""
    return ("fixed", "clip") if _varies([clips for clips, _, _ in points]) else ("clip",)


def extraction_fits(records: Sequence[dict]) -> dict:
    """Per worker count, fits of the full extraction and of the floor over every series."""
    fits = {}
    for workers in sorted({r["workers"] for r in records}):
        chosen = [r for r in records if r["workers"] == workers]
        for kind in ("full", "floor"):
            points = [(r[kind]["clips"], r[kind]["frames"], r[kind]["seconds"]) for r in chosen]
            fit = fit_costs(points, extraction_terms(points))
            fits[f"{kind}-w{workers}"] = dataclasses.asdict(fit) if fit else None
    return fits


def training_fits(records: Sequence[dict]) -> dict:
    """Training, development scoring and evaluation seconds against their clips (length does not vary)."""
    series = {"train": [(r["training"]["train_clips"], 0, r["training"]["train_seconds"]) for r in records],
              "development": [(r["training"]["dev_clips"], 0, r["training"]["dev_seconds"]) for r in records],
              "evaluation": [(r["evaluation"]["clips"], 0, r["evaluation"]["seconds"]) for r in records]}
    return {name: _as_dict(fit_costs(points, clip_terms(points))) for name, points in series.items()}


def _as_dict(fit: CostFit | None) -> dict | None:
    return dataclasses.asdict(fit) if fit else None


def fit_from_dict(data: dict | None) -> CostFit | None:
    return CostFit(**{**data, "terms": tuple(data["terms"])}) if data else None


def mean_frames_per_clip(records: Sequence[dict]) -> float:
    counted = [r["full"] for r in records if r["series"] == "count"]
    return sum(r["frames"] for r in counted) / max(sum(r["clips"] for r in counted), 1)


def corpus_frames(corpus: FullCorpus, frames_per_clip: float, improv_frames: int) -> tuple[int, str]:
    """The frames assumed for a full corpus, and where the figure comes from."""
    if corpus.frames:
        return corpus.frames, corpus.frames_source
    if corpus is MSP_IMPROV and improv_frames:
        return improv_frames, "given with --improv-frames"
    return (round(corpus.clips * frames_per_clip),
            f"no sourced figure: {corpus.clips:,} clips x the demo's mean {frames_per_clip:.0f} frames per clip")


def project(fits: dict, training: dict, corpus: FullCorpus, frames: int, workers: int, scale: float,
            rate: float | None = None) -> dict:
    """Projected seconds of each stage on a full corpus, times ``scale`` (measured cores / target cores).

    ``rate``: frames/s of the largest extraction, a cross-check of the fit that needs no fit.
    """
    extraction = fit_from_dict(fits.get(f"full-w{workers}"))
    floor = fit_from_dict(fits.get(f"floor-w{workers}"))
    shares = corpus.split_shares
    train, dev, evaluation = (fit_from_dict(training.get(name))
                              for name in ("train", "development", "evaluation"))

    def scaled(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * scale

    epoch = (train.seconds(corpus.clips * shares["train"]) + dev.seconds(corpus.clips * shares["development"])
             if train and dev else None)
    return {"extraction": scaled(extraction.seconds(corpus.clips, frames) if extraction else None),
            "extraction_at_rate": scaled(frames / rate) if rate else None,
            "decode_floor": scaled(floor.seconds(corpus.clips, frames) if floor else None),
            "training_epoch": scaled(epoch),
            "evaluation": scaled(evaluation.seconds(corpus.clips * shares["test"]) if evaluation else None)}


def projections(results: dict) -> dict:
    """CREMA-D and MSP-IMPROV on 2 CPU cores (from a CPU run) and on one GPU machine (from a CUDA run)."""
    machine, config = results["machine"], results["config"]
    frames_per_clip = mean_frames_per_clip(results["extraction"])
    workers = max(worker_counts(config["workers"]))
    on_cpu = machine["device"] == "cpu"
    # Linear in cores: the measured all-cores figures, times (cores here / 2).
    scale = machine["cpu_count"] / PROJECTION_CORES
    record = largest(results["extraction"], workers=workers)
    rate = record["full"]["frames"] / record["full"]["seconds"] if record else None
    out = {"cpu_scale": scale, "corpora": []}
    for corpus in (CREMA_D, MSP_IMPROV):
        frames, source = corpus_frames(corpus, frames_per_clip, config["improv_frames"])
        figures = project(results["fits"]["extraction"], results["fits"]["training"], corpus, frames, workers,
                          scale if on_cpu else 1.0, rate)
        out["corpora"].append({"name": corpus.name, "clips": corpus.clips, "frames": frames, "frames_source": source,
                               "split_source": corpus.split_source,
                               "cpu_2_cores": figures if on_cpu else None, "gpu_machine": None if on_cpu else figures})
    return out
