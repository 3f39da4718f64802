"""The one wrapper every stage's ``main`` goes through.

It parses the stage's typed config, runs the stage, and turns a ``ProjectError`` into one line
on stderr (``<stage>: <message>``) and exit status 2; other exceptions are bugs and keep their
traceback. The stage function returns its exit status (0, or 1 for "done, with problems").
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from common.config import parse_config
from common.errors import ProjectError

Config = TypeVar("Config")
USAGE_ERROR = 2


def run_stage(name: str, config_class: type[Config], body: Callable[[Config], int], argv: list[str] | None,
              description: str) -> int:
    try:
        config = parse_config(config_class, argv, description=description)
        return body(config)
    except ProjectError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return USAGE_ERROR
