"""make crossval on a tiny real setup: every run trained and scored, the summary, reruns, a kill.

The setup is the training tests' (tests/model/training_fixture.py): a 4-actor manifest and HDF5
shards of synthetic features a tiny model learns; each run trains for 1 epoch.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipeline.crossval as crossval_stage
from common.config import parse_config
from experiments.crossval import CrossvalConfig, CrossvalError, my_share, plan
from experiments.summary import Estimate, estimate
from tests.model.training_fixture import TINY_STAGE_ARGS, Setup

REPO = Path(__file__).resolve().parents[2]
CROSSVAL = Path("runs/demo/crossval/test")


def crossval_args(setup: Setup, partitions: str, seeds: int, models: str = "auxformer mult") -> list[str]:
    options = " ".join([*TINY_STAGE_ARGS, "--epochs", "1", "--corpus-dir", str(setup.corpus)])
    return ["--dataset", "demo", "--models", models, "--partitions", partitions, "--seeds", str(seeds),
            "--train-options", options, "--name", "test", "--jobs", "2"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("crossval"))


def run_files(workspace: Path) -> dict[Path, float]:
    return {path: path.stat().st_mtime for path in (workspace / CROSSVAL).rglob("*") if path.is_file()}


def test_crossval_trains_scores_and_sums_up_every_run_and_a_rerun_does_nothing(setup, monkeypatch, capsys):
    monkeypatch.chdir(setup.workspace)
    assert crossval_stage.main(crossval_args(setup, "1", seeds=2)) == 0
    folder = setup.workspace / CROSSVAL
    for name in ("results.csv", "report.md", "crossval.png", "crossval.yaml"):
        assert (folder / name).is_file(), name
    with (folder / "results.csv").open() as stream:
        rows = [row for row in csv.DictReader(stream) if row["predicting"] == "True"]
    runs = {(row["model"], row["partition"], row["seed"]) for row in rows}
    assert runs == {(model, "1", seed) for model in ("auxformer", "mult") for seed in "01"}
    assert {row["condition"] for row in rows} == {"audio_visual", "audio_only", "video_only"}
    for row in rows:  # every score is the one make eval wrote in the run folder
        assert (setup.workspace / row["run_dir"] / "metrics.json").is_file()
        assert (setup.workspace / row["run_dir"] / "best.pt").is_file()
    report = (folder / "report.md").read_text()
    assert "auxformer minus each other model" in report and "| mult | both |" in report
    assert report.count("| auxformer | ") == 2  # the kept epoch of each of its runs

    before = run_files(setup.workspace)
    capsys.readouterr()
    assert crossval_stage.main(crossval_args(setup, "1", seeds=2)) == 0
    assert "4 runs, 4 of this share scored already, 0 to train and score" in capsys.readouterr().out
    after = run_files(setup.workspace)
    changed = [path.name for path in before if after[path] != before[path]]
    assert changed == ["crossval.yaml"]  # its options, saved again; no run, score or summary rewritten


def test_a_killed_crossval_resumes_without_redoing_the_scored_runs(setup, tmp_path):
    args = crossval_args(setup, "1-2", seeds=1, models="auxformer") + ["--runs-root", str(tmp_path), "--jobs", "1"]
    command = [sys.executable, "-m", "pipeline.crossval", *args]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=setup.workspace, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    runs = [task.config().run_folder() for task in plan(parse_config(CrossvalConfig, args))]
    deadline = time.monotonic() + 240
    while not (setup.workspace / runs[0] / "metrics.json").is_file():
        assert process.poll() is None and time.monotonic() < deadline, "the crossval ended before a run was scored"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = setup.workspace / runs[0]
    scored_before = {name: (first / name).stat().st_mtime for name in ("best.pt", "metrics.json")}
    assert not (setup.workspace / runs[-1] / "metrics.json").is_file()

    finished = subprocess.run(command, cwd=setup.workspace, env=environment, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "1 of this share scored already, 1 to train and score" in finished.stdout
    assert {name: (first / name).stat().st_mtime for name in scored_before} == scored_before
    assert all((setup.workspace / run / "metrics.json").is_file() for run in runs)
    assert (tmp_path / "demo" / "crossval" / "test" / "report.md").is_file()


def test_the_interval_is_over_partition_means_and_needs_two_of_them():
    # Seeds of one partition agree closely; the partitions differ: the interval follows the partitions.
    spread = estimate({1: [0.50, 0.51], 2: [0.70, 0.71], 3: [0.60, 0.61]})
    assert spread.runs == 6 and spread.mean == pytest.approx(0.605)
    # t(0.975, 2) = 4.303; the partition means 0.505, 0.705, 0.605 have a deviation of 0.1.
    assert spread.high - spread.low == pytest.approx(2 * 4.303 * 0.1 / 3**0.5, rel=1e-3)
    assert estimate({1: [0.5, 0.7]}).low == pytest.approx(0.6 - 12.706 * 0.1, rel=1e-3)  # one partition: seeds
    assert estimate({1: [0.5]}) == Estimate(0.5, 0.0, None, None, 1)


def test_options_the_crossval_sets_itself_are_refused(setup):
    with pytest.raises(CrossvalError, match="--train-options sets seed"):
        CrossvalConfig(train_options="--seed 3")
    with pytest.raises(CrossvalError, match="--partitions '0-6'"):
        CrossvalConfig(partitions="0-6")
    with pytest.raises(CrossvalError, match="--models"):
        CrossvalConfig(models="auxformer transformer")


def test_a_slurm_array_task_takes_every_nth_run():
    tasks = plan(CrossvalConfig(models="auxformer mult audio", partitions="1-2", seeds=2))
    environment = {"SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_MIN": "1"}
    shares = [my_share(tasks, {**environment, "SLURM_ARRAY_TASK_ID": str(task_id)}) for task_id in range(1, 6)]
    assert sorted((task for share in shares for task in share), key=tasks.index) == tasks
    assert [len(share) for share in shares] == [3, 3, 2, 2, 2]
    assert my_share(tasks, {}) == tasks
    folders = {task.config().run_folder() for task in tasks}
    assert len(folders) == 12 and all("crossval/default/runs/p" in str(folder) for folder in folders)
