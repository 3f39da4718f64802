"""The summary of a crossval: results.csv, report.md and crossval.png, from the runs' metrics.json.

Every score is a run's test-split score (make eval), of the head the variant predicts with, in
each condition the variant is scored in (both modalities, audio only, video only). Over the runs
of a model and condition the report gives the mean and standard deviation over all runs, and a
95% interval for the mean: Student's t over the partitions' means (each the mean over its seeds),
because runs on one partition share their test speakers and are not independent draws; with a
single partition the interval is over the seeds. The paired differences (the first model minus
each other, on the same partition and seed) are summarised the same way.
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from common import files
from model.variants import CONDITIONS, VARIANTS
from training.run_folder import EVAL_METRICS_FILE

RESULTS_FILE = "results.csv"
REPORT_FILE = "report.md"
PLOT_FILE = "crossval.png"
RESULT_COLUMNS = ("model", "partition", "seed", "condition", "head", "predicting", "macro_f1", "micro_f1", "accuracy",
                  "clips", "kept_epoch", "run_dir")
METRICS = {"macro_f1": "f1_macro", "micro_f1": "f1_micro", "accuracy": "accuracy"}
CONDITION_NAMES = {"audio_visual": "both", "audio_only": "audio only", "video_only": "video only"}


@dataclass(frozen=True)
class Estimate:
    """Mean, standard deviation over the runs, and the 95% interval of the mean (None when it has no spread to use)."""

    mean: float
    std: float
    low: float | None
    high: float | None
    runs: int

    def text(self) -> str:
        interval = f" [{self.low:.3f}, {self.high:.3f}]" if self.low is not None else ""
        return f"{self.mean:.3f} ± {self.std:.3f}{interval}"


def estimate(values_by_partition: dict[int, list[float]]) -> Estimate:
    """The estimate of the module docstring from {partition: [value per seed]}."""
    values = [value for seeds in values_by_partition.values() for value in seeds]
    units = ([float(np.mean(seeds)) for seeds in values_by_partition.values()] if len(values_by_partition) > 1
             else values)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    if len(units) < 2:
        return Estimate(float(np.mean(values)), std, None, None, len(values))
    center = float(np.mean(units))
    half = float(stats.t.ppf(0.975, len(units) - 1) * np.std(units, ddof=1) / math.sqrt(len(units)))
    return Estimate(float(np.mean(values)), std, center - half, center + half, len(values))


def result_rows(tasks: Sequence) -> list[dict]:
    """One row per run, condition and scored head, from each run's metrics.json."""
    rows = []
    for task in tasks:
        run_dir = task.config().run_folder()
        metrics = json.loads((run_dir / EVAL_METRICS_FILE).read_text())
        for condition, by_head in metrics["results"].items():
            for head, scores in by_head.items():
                rows.append({"model": task.model, "partition": task.partition, "seed": task.seed,
                             "condition": condition, "head": head,
                             "predicting": head == metrics["predicting_head"],
                             **{name: round(scores[key], 6) for name, key in METRICS.items()},
                             "clips": scores["clips"], "kept_epoch": metrics["checkpoint_epoch"],
                             "run_dir": str(run_dir)})
    return rows


def _by_partition(rows: list[dict], metric: str) -> dict[int, list[float]]:
    grouped = defaultdict(list)
    for row in rows:
        grouped[row["partition"]].append(row[metric])
    return dict(grouped)


def model_estimates(rows: list[dict], models: Sequence[str], metric: str) -> dict[tuple[str, str], Estimate]:
    """{(model, condition): estimate} of the predicting head."""
    estimates = {}
    for model in models:
        for condition in CONDITIONS:
            chosen = [row for row in rows if row["model"] == model and row["condition"] == condition
                      and row["predicting"]]
            if chosen:
                estimates[model, condition] = estimate(_by_partition(chosen, metric))
    return estimates


def paired_differences(rows: list[dict], models: Sequence[str], metric: str) -> dict[tuple[str, str], tuple]:
    """{(other model, condition): (estimate of first minus other, runs the first did better in)}."""
    first, differences = models[0], {}
    scores = {(row["model"], row["condition"], row["partition"], row["seed"]): row[metric]
              for row in rows if row["predicting"]}
    for other in models[1:]:
        for condition in CONDITIONS:
            pairs = [(partition, scores[first, condition, partition, seed] - scores[other, condition, partition, seed])
                     for (model, cond, partition, seed) in scores
                     if model == first and cond == condition and (other, condition, partition, seed) in scores]
            if pairs:
                grouped = defaultdict(list)
                for partition, difference in pairs:
                    grouped[partition].append(difference)
                differences[other, condition] = (estimate(dict(grouped)), sum(d > 0 for _, d in pairs))
    return differences


def verdict(difference: Estimate) -> str:
    if difference.low is None:
        return "too few partitions or seeds for an interval"
    if difference.low > 0:
        return "higher: the interval is above 0"
    if difference.high < 0:
        return "lower: the interval is below 0"
    return "no difference shown: the interval contains 0"


def command_line(config) -> str:
    options = f' TRAIN_ARGS="{config.train_options}"' if config.train_options else ""
    return (f'make crossval DATASET={config.dataset} MODELS="{" ".join(config.model_list())}" '
            f"PARTITIONS={config.partitions} SEEDS={config.seeds}{options}")


def report_text(rows: list[dict], tasks: Sequence, config) -> str:
    models = config.model_list()
    lines = [f"# Cross-validation on {config.dataset}: {', '.join(models)}", "",
             f"`{command_line(config)}`, summed up {time.strftime('%Y-%m-%d %H:%M')}: "
             f"{len(config.partition_list())} partitions x {config.seeds} seeds, {len(tasks)} runs. Test-split "
             "scores of each variant's predicting head. Cells: mean ± standard deviation over the runs "
             "[95% interval of the mean, Student's t over the partitions' means]."]
    for metric in METRICS:
        estimates = model_estimates(rows, models, metric)
        lines += ["", f"## {metric}", "", "| model | " + " | ".join(CONDITION_NAMES.values()) + " |",
                  "|---|" + "---|" * len(CONDITIONS)]
        for model in models:
            cells = [estimates[model, c].text() if (model, c) in estimates else "" for c in CONDITIONS]
            lines.append(f"| {model} ({VARIANTS[model].predicting_head}) | " + " | ".join(cells) + " |")
    if len(models) > 1:
        lines += ["", f"## Paired differences: {models[0]} minus each other model (macro_f1)", "",
                  "The same partition and seed; the interval as above. Wins: runs in which "
                  f"{models[0]} scored higher.", "", "| minus | condition | difference | wins | verdict |",
                  "|---|---|---|---:|---|"]
        for (other, condition), (difference, wins) in paired_differences(rows, models, "macro_f1").items():
            lines.append(f"| {other} | {CONDITION_NAMES[condition]} | {difference.text()} | "
                         f"{wins}/{difference.runs} | {verdict(difference)} |")
    lines += ["", "## Kept epochs", "", "Each run kept the epoch chosen on its development split (select_by); "
              "the test split was read by evaluation only.", "", "| model | partition | seed | kept epoch |",
              "|---|---:|---:|---:|"]
    kept = {(row["model"], row["partition"], row["seed"]): row["kept_epoch"] for row in rows}
    lines += [f"| {model} | {partition} | {seed} | {epoch} |" for (model, partition, seed), epoch in kept.items()]
    lines += ["", f"Per run, condition and head: {RESULTS_FILE}. Bars: {PLOT_FILE}.", ""]
    return "\n".join(lines)


def plot(rows: list[dict], models: Sequence[str], path) -> None:
    """Macro-F1 bars per condition, one per model, with the 95% interval."""
    estimates = model_estimates(rows, models, "macro_f1")
    figure = Figure(figsize=(2.2 + 2.0 * len(CONDITIONS), 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    width = 0.8 / len(models)
    for index, model in enumerate(models):
        positions, heights, errors = [], [], [[], []]
        for slot, condition in enumerate(CONDITIONS):
            if (model, condition) not in estimates:
                continue
            value = estimates[model, condition]
            positions.append(slot - 0.4 + width * (index + 0.5))
            heights.append(value.mean)
            errors[0].append(value.mean - value.low if value.low is not None else 0)
            errors[1].append(value.high - value.mean if value.high is not None else 0)
        axes.bar(positions, heights, width, yerr=errors, capsize=3, label=model)
    axes.set_xticks(range(len(CONDITIONS)), list(CONDITION_NAMES.values()))
    axes.set(ylabel="test macro-F1", ylim=(0, 1), title="mean over partitions and seeds, 95% interval")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    with files.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")


def write_summary(folder, tasks: Sequence, config) -> None:
    rows = result_rows(tasks)
    files.write_csv(folder / RESULTS_FILE, RESULT_COLUMNS, rows)
    files.write_text(folder / REPORT_FILE, report_text(rows, tasks, config))
    plot(rows, config.model_list(), folder / PLOT_FILE)
