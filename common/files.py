"""Atomic file writes: a file is written under a temporary name in its folder and renamed into
place, so a reader (or a rerun after ``kill -9``) sees the old file or the new one, never half."""
from __future__ import annotations

import csv
import errno
import io
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from common.errors import ProjectError

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """A temporary name for ``path`` in its folder (so the rename is atomic), unique to this writer so
    that processes writing the same file at once never write into each other's temporary file."""
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")


class DiskFullError(ProjectError):
    """A write that found no space left; what was written before it is whole."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block ends without error.
    A full disk is a DiskFullError naming ``path``: the half-written temporary file goes, the
    previous ``path`` (if any) and every file written before it stay."""
    temporary = partial_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as error:
        if not _is_disk_full(error):
            raise
        raise _disk_full(path) from None
    finally:
        temporary.unlink(missing_ok=True)


def append_text(path: Path, text: str) -> None:
    """Append to a log; a full disk is a DiskFullError, the lines written before stay."""
    try:
        with path.open("a") as stream:
            stream.write(text)
    except OSError as error:
        if not _is_disk_full(error):
            raise
        raise _disk_full(path) from None


def check_writable(folder: Path, option: str) -> None:
    """Create ``folder`` and try a file in it; a ProjectError naming ``option`` when it cannot be written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ProjectError(f"{folder}: cannot write there ({error.strerror}); make it writable or give another "
                           f"{option}") from None


def _disk_full(path: Path) -> DiskFullError:
    return DiskFullError(f"{path}: no space left on the device; what was written before is kept (the previous "
                         f"{path.name} too, if there was one); free some space and run the same command again, "
                         "it goes on from there")


def _is_disk_full(error: OSError) -> bool:
    # h5py reports the C library's failed write as an OSError without an errno, the reason in its text.
    return error.errno == errno.ENOSPC or "No space left on device" in str(error)


def remove_partials(path: Path) -> int:
    """Delete the temporary files that writers of ``path`` killed mid-write left; call it only while no
    other writer of ``path`` can be at work (under the lock that serialises them)."""
    leftovers = list(path.parent.glob(f"{path.name}.*{PARTIAL_SUFFIX}"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def csv_text(columns: Sequence[str], rows: Sequence[dict]) -> str:
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue()


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    write_text(path, csv_text(columns, rows))
