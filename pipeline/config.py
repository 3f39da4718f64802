"""Typed stage configuration: a dataclass is the config, its fields are the command line.

Every stage declares a ``@dataclass`` whose fields carry a ``help`` in their metadata;
``parse_config`` turns it into command-line options and ``save_config`` writes it as YAML next to
what the stage produced, so each output says how it was made.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

Config = TypeVar("Config")


def option(default: Any, help: str) -> Any:
    """A config field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


def parse_config(config_class: type[Config], argv: list[str] | None = None, description: str = "") -> Config:
    parser = argparse.ArgumentParser(description=description,
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
    return config_class(**vars(parser.parse_args(argv)))


def to_yaml(config) -> str:
    values = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
    return yaml.safe_dump(values, sort_keys=False)


def save_config(config, path: Path) -> None:
    path.write_text(to_yaml(config))
