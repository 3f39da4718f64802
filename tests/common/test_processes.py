"""Forked pools after OpenCV has run its thread pool in the parent, as happens in one test session or
a notebook that looked at frames before extracting; and peak memory that is a process's own."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = textwrap.dedent("""
    import cv2
    import numpy as np

    from common.processes import process_pool

    def init():
        cv2.setNumThreads(1)  # what every worker of the project does first

    def work(side):
        return cv2.resize(np.zeros((side, side, 3), np.uint8), (side // 2, side // 2)).shape[0]

    cv2.setNumThreads(2)
    image = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), np.uint8)
    for _ in range(10):  # OpenCV's worker threads now exist in this process
        cv2.resize(image, (2500, 2500))
    threads = cv2.getNumThreads()
    with process_pool(2, init) as pool:
        print(sum(pool.map(work, [64, 128, 256])))
    assert cv2.getNumThreads() == threads, "the parent's OpenCV threads were not given back"
""")


def test_a_process_pool_starts_after_the_parent_ran_opencv_threads():
    done = subprocess.run([sys.executable, "-c", SCENARIO], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["224"]


def test_a_process_started_by_a_larger_one_reports_its_own_peak_memory():
    """make bench measures each stage in a child it starts; the child must not report the parent's memory."""
    import numpy as np

    from common.processes import peak_memory_mb

    held = np.ones(400 * 2**20, np.uint8)  # touched, so resident in this process
    child = subprocess.run([sys.executable, "-c", "from common.processes import peak_memory_mb; "
                            "print(peak_memory_mb())"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert peak_memory_mb() > 400 + float(child.stdout)
    assert float(child.stdout) < 100  # Python and the module alone
    del held
