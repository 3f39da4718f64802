"""Child processes: pools that are safe to fork, and children that end with their parent."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def die_with_parent() -> None:
    """Have the kernel end this process when its parent dies (even by kill -9), so that no orphan keeps
    working and holding memory. Call it first thing in the child."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


@contextmanager
def process_pool(workers: int, initializer: Callable | None = None, initargs: tuple = (),
                start_method: str = "fork") -> Iterator[ProcessPoolExecutor]:
    """A process pool whose processes are started with ``start_method`` (forked by default: they
    start at once, sharing what this process has loaded), with OpenCV's thread pool stopped for the
    pool's life.

    A child forked while OpenCV's worker threads exist inherits their locks but not the threads, and
    hangs in its first cv2.setNumThreads (each of three tries, after one parallel resize in the
    parent). With one thread in the parent there is nothing to inherit; the parent's count comes back
    when the pool is done.
    """
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method),
                                 initializer=initializer, initargs=initargs) as pool:
            yield pool
    finally:
        cv2.setNumThreads(threads)
