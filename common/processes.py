"""Child processes: pools that are safe to fork, children that end with their parent, and peak
resident memory that is a process's own."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
M_MMAP_THRESHOLD = -3  # mallopt option (malloc.h)
# glibc's own starting value; fixing it stops glibc from raising it as blocks are freed.
MMAP_THRESHOLD_BYTES = 128 * 1024


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


def keep_large_blocks_returnable() -> None:
    """Have glibc give every block of at least MMAP_THRESHOLD_BYTES its own mapping, returned to the
    system when freed, for the rest of this process's life.

    By default glibc raises that threshold each time such a block is freed, after which blocks of
    the same size come from its heap, where freed memory mostly stays with the process: predicting
    a long recording segment by segment (a few MB of arrays a batch, freed after it) then grew by
    about 4 MB a minute of recording (README, "Long recordings"). No-op where there is no glibc."""
    try:
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def peak_memory_mb() -> float:
    """This process's peak resident memory in MB, its own: from /proc/self/status where there is one.

    Linux carries ru_maxrss across exec, so a process started by a larger one (every measurement
    of make bench, and any helper such as the `uname` that importing h5py runs) would report at
    least what its parent held when it forked."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kilobytes


def largest_child_peak_mb() -> float:
    """The largest ru_maxrss among this process's finished children, in MB: at least what this
    process held when it started the largest of them, so an upper bound on what they used."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
