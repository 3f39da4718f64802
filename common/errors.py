"""The one error type of the project.

Every library raises a subclass of ``ProjectError`` for input or state it cannot go on with
(a missing corpus, features that do not fit the model, a damaged run folder); the message names
the file and says what to do. Stages turn it into one line on stderr and exit status 2
(common.cli); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class ProjectError(Exception):
    """Bad input or state that stops a stage; the message names the file and the fix."""
