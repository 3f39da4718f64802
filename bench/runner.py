"""Running the benchmark's measurements in child processes: the parent side (``Runner``, which
starts a child for each measurement, logs its output and reads back its figures, and
``GpuSampler``, which samples GPU utilisation with nvidia-smi meanwhile) and the child side
(``measure_in_child``, the entry point of every child, which adds the child's peak memory to the
figures). A fresh process per measurement makes its peak memory its own, as peak resident memory
is a high-water mark over a process's life; each process reads its own (``VmHWM``), since the
kernel's ``ru_maxrss`` of a child counts what its parent held when it forked.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common.errors import ProjectError

REPO_ROOT = Path(__file__).resolve().parents[1]
GPU_SAMPLE_MS = 200
# What nvidia-smi prints for a figure it does not have; a GPU in MIG mode has no utilisation.
NOT_REPORTED = ("[N/A]", "[Not Supported]")
UTILISATION_NOT_REPORTED = ("not reported: nvidia-smi gives utilisation as [N/A] for this GPU (in MIG mode it "
                            "reports none, for the GPU or its instances)")
CHILD_CODE = ("import sys; from bench.runner import measure_in_child; "
              "sys.exit(measure_in_child(sys.argv[1], sys.argv[2]))")


class BenchError(ProjectError):
    """The benchmark cannot go on; the message says why."""


def measure_in_child(kind: str, spec_json: str) -> int:
    """Entry point of a child process: run one measurement, write its figures to spec['result']."""
    # Imported here, in the child only: bench.measure imports this module for BenchError, and the
    # parent never needs the pipeline modules the measurements load.
    from bench.measure import MEASUREMENTS
    from common.processes import largest_child_peak_mb, peak_memory_mb

    spec = json.loads(spec_json)
    figures = MEASUREMENTS[kind](spec)
    # Extraction's workers and the floor's measure themselves; other children (training's loader
    # processes, all reaped by now) are bounded from above.
    child_mb = figures.pop("worker_peak_mb", None) or largest_child_peak_mb()
    figures["peak_mb"] = {"main": round(peak_memory_mb()), "largest_child": round(child_mb)}
    Path(spec["result"]).write_text(json.dumps(figures))
    return 0


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH", "")] if p])
    return env


class GpuSampler:
    """GPU utilisation while a measurement runs (when enabled): nvidia-smi asked every GPU_SAMPLE_MS
    about the GPU the children call cuda:0 (they inherit this process's CUDA_VISIBLE_DEVICES).

    One short nvidia-smi call per sample rather than its own loop (-lms), whose output, buffered
    in a pipe, is lost when it is stopped.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        if self.enabled:
            self.command = ["nvidia-smi", "-i", cuda0_bus_id(), "--query-gpu=utilization.gpu",
                            "--format=csv,noheader,nounits"]
        self.samples: list[float] = []
        self.not_reported = 0  # answers of [N/A]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                done = subprocess.run(self.command, capture_output=True, text=True, timeout=5)
                samples, not_reported = parse_utilisation(done.stdout)
                self.samples += samples
                self.not_reported += not_reported
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._stop.wait(GPU_SAMPLE_MS / 1000)

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        return {"mean": round(statistics.fmean(self.samples), 1), "max": max(self.samples),
                "samples": len(self.samples), "every_ms": GPU_SAMPLE_MS}


def cuda0_bus_id() -> str:
    """The PCI bus id, as nvidia-smi writes it, of the GPU torch calls cuda:0. nvidia-smi's index need
    not be CUDA's (CUDA orders GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and counts
    only those CUDA_VISIBLE_DEVICES names); the bus id is the same for both. A MIG instance has its
    GPU's bus id."""
    import torch

    properties = torch.cuda.get_device_properties(0)
    return f"{properties.pci_domain_id:08X}:{properties.pci_bus_id:02X}:{properties.pci_device_id:02X}.0"


def parse_utilisation(output: str) -> tuple[list[float], int]:
    """nvidia-smi's lines of percentages, and how many lines said it has none ([N/A]); anything else
    (a warning) is skipped."""
    samples, not_reported = [], 0
    for line in output.splitlines():
        if line.strip() in NOT_REPORTED:
            not_reported += 1
            continue
        try:
            samples.append(float(line.strip()))
        except ValueError:
            continue
    return samples, not_reported


class Runner:
    """Runs measurements in child processes, their output logged to <run-dir>/logs/<name>.log."""

    def __init__(self, run_dir: Path, device: str):
        self.run_dir, self.device = run_dir, device
        self.logs = run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def measure(self, kind: str, name: str, spec: dict, cwd: Path = REPO_ROOT, sample_gpu: bool = False) -> dict:
        result = self.run_dir / "results" / f"{name}.json"
        result.parent.mkdir(exist_ok=True)
        spec = {**spec, "device": self.device, "result": str(result)}
        with GpuSampler(sample_gpu and self.device == "cuda") as sampler:
            self._run([sys.executable, "-c", CHILD_CODE, kind, json.dumps(spec)], name, cwd)
        figures = json.loads(result.read_text())
        figures["gpu_utilisation"] = sampler.summary()
        if sampler.not_reported and not sampler.samples:
            figures["gpu_utilisation_note"] = UTILISATION_NOT_REPORTED
        return figures

    def time_command(self, command: list[str], name: str, cwd: Path = REPO_ROOT) -> float:
        """Wall seconds of a command run to completion, process start included."""
        started = time.perf_counter()
        self._run(command, name, cwd)
        return time.perf_counter() - started

    def _run(self, command: list[str], name: str, cwd: Path) -> None:
        log = self.logs / f"{name}.log"
        with log.open("w") as stream:
            done = subprocess.run(command, cwd=cwd, env=child_env(), stdout=stream, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise BenchError(f"{name} failed (exit status {done.returncode}); the end of {log}:\n{tail}")
