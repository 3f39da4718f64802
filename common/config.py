"""Typed stage configuration: a dataclass is the config, its fields are the command line.

Every stage declares a ``@dataclass`` whose fields carry a ``help`` in their metadata;
``parse_config`` turns it into command-line options (whole names only: ``--worker`` is not taken
for ``--workers``) and ``to_yaml`` / ``save_config`` write it next to what the stage produced, so
each output says how it was made.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from common import files

Config = TypeVar("Config")


def option(default: Any, help: str) -> Any:
    """A config field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


def parse_config(config_class: type[Config], argv: list[str] | None = None, description: str = "") -> Config:
    """The config from the command line. A config class may offer ``preset_values(namespace) -> dict``:
    values that replace its defaults (a saved configuration), which options given on the command
    line still override."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        help_text = field.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=field.default, help=help_text)
    namespace = parser.parse_args(argv)
    preset_values = getattr(config_class, "preset_values", None)
    if preset_values is not None:
        parser.set_defaults(**preset_values(namespace))
        namespace = parser.parse_args(argv)
    return config_class(**vars(namespace))


def config_values(config) -> dict:
    """The config as plain YAML-able values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}


def to_yaml(config) -> str:
    return yaml.safe_dump(config_values(config), sort_keys=False)


def save_config(config, path: Path) -> None:
    files.write_text(path, to_yaml(config))


def from_values(config_class: type[Config], values: dict) -> Config:
    """A config from recorded values, ignoring names the class no longer has."""
    known = {field.name for field in dataclasses.fields(config_class)}
    return config_class(**{name: value for name, value in values.items() if name in known})
