"""The path rule: how a path recorded in one of the project's files is written and read back.

A path is recorded relative to the repository root when it lies inside the repository
(``data/raw/demo``), otherwise absolute. A recorded relative path is always read back relative
to the repository root, never to the working directory, so every stage finds the same file
from wherever it is started. Paths inside a run folder (its own files) are not recorded at all:
they are fixed names below the folder, which is what lets a run folder be copied elsewhere.
Paths given on a command line are the user's, relative to the working directory as usual; the
defaults (``data/raw/demo``, ``data/features``, ``runs``) assume the repository root, where the
Makefile runs every stage.
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def record_path(path: Path) -> str:
    """``path`` as it is written into a file: repository-relative inside the repository, else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(resolved)


def resolve_recorded(recorded: str | Path) -> Path:
    """A path read from a file: a relative one is relative to the repository root."""
    path = Path(recorded)
    return path if path.is_absolute() else REPO_ROOT / path
