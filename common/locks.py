"""An exclusive lock on a file, for "only one process does this at a time".

The lock is an advisory ``flock`` on the file, so the kernel releases it when its holder dies,
even by ``kill -9``: a lock is never left stale by a dead process on this machine. The file
records who holds it (pid, host, start time) so that the error names the other run.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import ProjectError


class LockHeld(ProjectError):
    """Another process holds the lock; the message names it."""


@contextmanager
def exclusive_lock(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold the lock at ``path`` for the block; LockHeld at once when another process holds it (unless ``wait``)."""
    with open(path, "a+") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            stream.seek(0)
            holder = stream.read().strip() or "another process"
            raise LockHeld(f"{path}: {what} is already running ({holder}); wait for it to finish, or stop it. "
                           "A run that died released its lock; on a shared file system whose locks do not "
                           "reach this machine, delete the file once you are sure the other run is gone") from None
        stream.seek(0)
        stream.truncate()
        stream.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        stream.flush()
        try:
            yield
        finally:
            stream.seek(0)
            stream.truncate()
            fcntl.flock(stream, fcntl.LOCK_UN)
