"""make gpu-check: on a machine without CUDA it says so in one line, exits 0 and writes nothing;
its check runner keeps going past a failed check; the feature comparison's arithmetic. The checks
themselves need a GPU and minutes, so they are not run here."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench import gpu_check
from bench.gpu_check import Check, CheckFailed, Log, Workspace, clip_differences, one_line, run_check, slug
from bench.runner import REPO_ROOT
from extract.shards import ClipFeatures

no_cuda_only = pytest.mark.skipif(torch.cuda.is_available(),
                                  reason="a CUDA device is available: make gpu-check would run every check")


def assert_skip_line(output: str) -> None:
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert "skipped" in lines[0] and "no CUDA device" in lines[0]


@no_cuda_only
def test_without_cuda_main_prints_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    assert gpu_check.main(["--work-dir", str(work)]) == 0
    assert_skip_line(capsys.readouterr().out)
    assert not work.exists()
    monkeypatch.chdir(tmp_path)  # the default work folder, bench/scratch/gpu-check, is relative
    assert gpu_check.main([]) == 0
    assert_skip_line(capsys.readouterr().out)
    assert list(tmp_path.iterdir()) == []  # neither bench/scratch/gpu-check nor anything else


@no_cuda_only
def test_without_cuda_the_command_prints_one_line_and_exits_0(tmp_path):
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--work-dir", str(work)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_skip_line(done.stdout)
    assert not work.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_is_reported_and_the_others_still_run(tmp_path, capsys):
    ws = Workspace(root=tmp_path, seed=0)
    log = Log(tmp_path / "gpu-check.log")

    def broken(_):
        raise ValueError("boom")

    def wrong(_):
        raise CheckFailed("2 clips\ndiffer")

    passed = {}
    for check in (Check("first", broken), Check("second", lambda _: "fine"), Check("third", wrong),
                  Check("fourth", lambda _: "never", needs=("first", "second"))):
        passed[check.name] = run_check(check, ws, passed, log)
    assert passed == {"first": False, "second": True, "third": False, "fourth": False}
    printed = capsys.readouterr().out.splitlines()
    assert printed == log.path.read_text().splitlines()  # everything printed is in the log
    assert printed[0].startswith("gpu-check: first: FAILED (ValueError: boom; traceback in ")
    assert "Traceback" in (tmp_path / "logs" / "first.log").read_text()
    assert printed[1].startswith("gpu-check: second: ok (fine) [")
    assert printed[2].startswith("gpu-check: third: FAILED (2 clips | differ) [")
    assert printed[3] == "gpu-check: fourth: FAILED (not run: needs first) [0.0 s]"


def clip(mel_shift: float = 0.0, embedding_shift: float = 0.0, box_shift: float = 0.0) -> ClipFeatures:
    boxes = np.array([[10, 20, 100, 100], [np.nan] * 4, [11, 20, 100, 100]], np.float32)
    return ClipFeatures("c", audio=np.full((5, 80), -30.0, np.float32) + mel_shift,
                        embedding=np.ones((3, 135), np.float32) + embedding_shift,
                        valid=np.array([True, False, True]), boxes=boxes + box_shift, timestamps=np.arange(3) / 30,
                        duration=0.1, fps=30.0)


def test_clip_differences_measure_each_array_and_treat_missing_boxes_as_equal():
    assert clip_differences(clip(), clip()) == (0.0, 0.0, True)  # NaN boxes (no face) match
    mel, embedding, same = clip_differences(clip(), clip(mel_shift=0.5, embedding_shift=-2e-4))
    assert mel == pytest.approx(0.5) and embedding == pytest.approx(2e-4, rel=1e-3) and same
    assert not clip_differences(clip(), clip(box_shift=1.0))[2]


def test_the_gpu_name_and_messages_fit_a_file_name_and_one_line():
    assert slug("NVIDIA H200") == "nvidia-h200"
    assert slug("NVIDIA A100-SXM4-80GB") == "nvidia-a100-sxm4-80gb"
    assert slug("") == "unknown-gpu"
    assert one_line("a\n\n  b  \nc") == "a | b | c"
    assert len(one_line("x" * 1000)) == 400
