"""Typed stage configuration: a dataclass is the config, its fields are the command line.

Every stage declares a ``@dataclass`` whose fields carry a ``help`` in their metadata;
``parse_config`` turns it into command-line options (whole names only: ``--worker`` is not taken
for ``--workers``) and ``to_yaml`` / ``save_config`` write it next to what the stage produced, so
each output says how it was made.

A config is composed of parts: a field declared with ``part(SomeConfig, ...)`` holds a whole
config of its own. A part's fields are options of the stage as they are (``--lr`` for the
training part), unless the part is ``bundled``: then the stage lists one option for it, the
part's options as one string (``--features "--audio-encoder egemaps --face-rate 5"``), the way
another stage takes them, and still takes each of them alone. That is how a stage that only
*names* what another stage made (training names its extraction) takes that stage's options
without listing them as its own.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from common import files
from common.errors import ProjectError

Config = TypeVar("Config")
PART = "part"


class ConfigError(ProjectError):
    """Options or saved values that make no config; the message names the option or file."""


def option(default: Any, help: str) -> Any:
    """A config field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


def part(config_class: type, help: str = "", bundled: bool = False, shared: tuple[str, ...] = (),
         excluded: tuple[str, ...] = ()) -> Any:
    """A field that holds a whole ``config_class``.

    ``bundled``: listed as one option taking the part's options as one string (``help`` says
    what they are); each is still taken alone. ``shared``: the part's fields that take the value
    of the composing config's field of the same name (training's ``dataset`` is its manifest's);
    ``excluded``: fields of the part that stay at their defaults here (not options of this stage).
    """
    return dataclasses.field(default_factory=config_class,
                             metadata={PART: config_class, "help": help, "bundled": bundled, "shared": shared,
                                       "excluded": excluded})


def is_part(field: dataclasses.Field) -> bool:
    return PART in field.metadata


def check_within(name: str, value: float, low: float, high: float, error: type[ProjectError]) -> None:
    """Refuse a length, count or rate outside low..high (NaN and infinity included): one option
    value must not be able to ask for more memory or time than a machine has."""
    if not (math.isfinite(value) and low <= value <= high):
        raise error(f"{flag(name)} must be within {_number(low)}..{_number(high)}, got {value}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_fields(config_class: type) -> list[tuple[dataclasses.Field, type]]:
    hints = typing.get_type_hints(config_class)
    return [(field, hints[field.name]) for field in dataclasses.fields(config_class)]


def _inner_fields(field: dataclasses.Field) -> list[tuple[dataclasses.Field, type]]:
    skipped = set(field.metadata["shared"]) | set(field.metadata["excluded"])
    return [(inner, kind) for inner, kind in _option_fields(field.metadata[PART]) if inner.name not in skipped]


def _options(config_class: type, fields=None, hidden: bool = False):
    """(field, type, hidden) of every option of a config, its parts' included, depth first; and
    (field, None, hidden) for each bundled part, before its own options."""
    for field, kind in fields if fields is not None else _option_fields(config_class):
        if not is_part(field):
            yield field, kind, hidden
            continue
        if field.metadata["bundled"]:
            yield field, None, hidden
        yield from _options(field.metadata[PART], _inner_fields(field), hidden or field.metadata["bundled"])


def _add_option(parser, field: dataclasses.Field, kind: type, help_text: str) -> None:
    """An option whose value is in the namespace only when given (defaults are filled in later, so
    that a preset's values can sit between the defaults and the command line)."""
    if help_text != argparse.SUPPRESS:
        shown = str(field.default) if isinstance(field.default, Path) else repr(field.default)
        help_text = f"{help_text} (default: {shown})"
    if kind is bool:
        parser.add_argument(flag(field.name), dest=field.name, action=argparse.BooleanOptionalAction,
                            default=argparse.SUPPRESS, help=help_text)
    else:
        parser.add_argument(flag(field.name), dest=field.name, type=kind, default=argparse.SUPPRESS, help=help_text)


def _parser(config_class: type, description: str = "", fields=None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False, add_help=fields is None,
                                     exit_on_error=fields is None, formatter_class=argparse.RawDescriptionHelpFormatter)
    bundles = []
    for field, kind, hidden in _options(config_class, fields):
        if kind is None:  # a bundled part: its options as one string
            parser.add_argument(flag(field.name), dest=f"{BUNDLE}{field.name}", type=str, default=argparse.SUPPRESS,
                                metavar="OPTIONS", help=argparse.SUPPRESS if hidden else field.metadata["help"])
            bundles.append(field.name)
        else:
            _add_option(parser, field, kind, argparse.SUPPRESS if hidden else field.metadata.get("help", ""))
    if bundles and fields is None:
        parser.epilog = (f"Each option that {', '.join(flag(name) for name in bundles)} takes as one string is "
                         "also taken alone, as its own stage takes it.")
    return parser


BUNDLE = "bundle:"


def parse_config(config_class: type[Config], argv: list[str] | None = None, description: str = "") -> Config:
    """The config from the command line. A config class may offer ``preset_values(given) -> dict``:
    values that replace its defaults (a saved configuration), which options given on the command
    line still override; ``given`` holds the config's own options as given, by name.

    Values go by option name: the defaults, then the preset's, then a bundled part's string, then
    the options given alone. Option names are unique within a config but for a part's ``shared``
    fields, which take the composing config's value."""
    namespace = vars(_parser(config_class, description).parse_args(argv))
    preset_values = getattr(config_class, "preset_values", None)
    preset = preset_values(_Given(config_class, namespace)) if preset_values is not None else {}
    values = _flat(config_class, preset, "the preset")
    for key, text in namespace.items():
        if key.startswith(BUNDLE):
            values.update(_bundle_values(config_class, key[len(BUNDLE):], text))
    values.update({key: value for key, value in namespace.items() if not key.startswith(BUNDLE)})
    return _construct(config_class, values)


class _Given:
    """The config's own options as given on the command line, by attribute, else their defaults."""

    def __init__(self, config_class: type, namespace: dict):
        self._defaults = {field.name: field.default for field in dataclasses.fields(config_class)}
        self._namespace = namespace

    def __getattr__(self, name: str):
        return self._namespace.get(name, self._defaults.get(name))


def _part_field(config_class: type, name: str, fields=None) -> dataclasses.Field | None:
    """The part called ``name``, at any depth; None when there is none."""
    for field, _ in fields if fields is not None else _option_fields(config_class):
        if is_part(field) and field.name == name:
            return field
        if is_part(field):
            found = _part_field(field.metadata[PART], name, _inner_fields(field))
            if found is not None:
                return found
    return None


def _flat(config_class: type, values: dict, where: str) -> dict:
    """Values by option name from a mapping that may hold a part's values as a nested mapping, or a
    bundled part's as its string."""
    flat = {}
    for name, value in values.items():
        field = _part_field(config_class, name)
        if field is None:
            flat[name] = value
        elif isinstance(value, dict):
            flat.update(_flat(field.metadata[PART], value, where))
        elif isinstance(value, str) and field.metadata["bundled"]:
            flat.update(_bundle_values(config_class, name, value))
        else:
            raise ConfigError(f"{where}: {name} must be a mapping of its options, not {value!r}")
    return flat


def _bundle_values(config_class: type, name: str, text: str) -> dict:
    """The options in ``text`` (``--name value ...``) of the bundled part ``name``, by option name."""
    field = _part_field(config_class, name)
    inner = _inner_fields(field)
    parser = _parser(field.metadata[PART], fields=inner)
    try:
        given, unknown = parser.parse_known_args(shlex.split(text))
    except (ValueError, argparse.ArgumentError) as error:
        raise ConfigError(f"{flag(name)} {text!r}: {error}") from None
    if unknown:
        names = [flag(option.name) for option, kind, _ in _options(field.metadata[PART], inner) if kind is not None]
        raise ConfigError(f"{flag(name)} {text!r}: {' '.join(unknown)} is not one of its options ({', '.join(names)})")
    return {key[len(BUNDLE):] if key.startswith(BUNDLE) else key: value for key, value in vars(given).items()}


def _construct(config_class: type[Config], values: dict, excluded: tuple[str, ...] = (),
               shared: dict | None = None) -> Config:
    """The config from values by option name (defaults for the rest): its own options first, then its
    parts, each given the values of its shared fields."""
    arguments = dict(shared or {})
    own = [field for field in dataclasses.fields(config_class) if field.name not in arguments
           and field.name not in excluded]
    for field in own:
        if not is_part(field) and field.name in values:
            arguments[field.name] = values[field.name]
    for field in own:
        if is_part(field):
            meta = field.metadata
            known = {name: arguments.get(name, _default(config_class, name)) for name in meta["shared"]}
            arguments[field.name] = _construct(meta[PART], values, meta["excluded"], known)
    return config_class(**arguments)


def _default(config_class: type, name: str):
    field = {field.name: field for field in dataclasses.fields(config_class)}[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def option_names(config_class: type) -> set[str]:
    """Every value a preset may set: every option's name, and each top-level or bundled part's."""
    names = {field.name for field, _, _ in _options(config_class)}  # options, and bundled parts
    return names | {field.name for field, _ in _option_fields(config_class) if is_part(field)}


def wrong_types(config_class: type, values: dict) -> list[str]:
    """The values, by option name, that are not of their option's type (an int is a float too; a part
    given as a mapping or a bundled part's string is checked by option): '<name> <value>' for each."""
    kinds = {field.name: kind for field, kind, _ in _options(config_class) if kind is not None}
    wrong = []
    for name, value in _flat(config_class, values, "the values").items():
        kind = kinds.get(name)
        if kind is None or isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if kind is Path and isinstance(value, str):
            continue
        wrong.append(f"{name} {value!r} (not a {kind.__name__})")
    return wrong


def listed_options(config_class: type) -> int:
    """How many options the stage's ``--help`` lists (a bundled part's as one)."""
    return sum(1 for action in _parser(config_class)._actions
               if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help")


def command_line(config) -> str:
    """The options that turn the defaults into ``config``, as its stage's command line takes them
    (``--audio-encoder egemaps --face-rate 5``); '' for the defaults."""
    given = []
    defaults = type(config)()
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if is_part(field):
            given.append(command_line(value))
        elif value != getattr(defaults, field.name):
            if isinstance(value, bool):
                given.append(flag(field.name) if value else flag(f"no_{field.name}"))
            else:
                given.append(f"{flag(field.name)} {shlex.quote(str(value))}")
    return " ".join(option for option in given if option)


def config_values(config) -> dict:
    """The config as plain YAML-able values (paths as strings), its parts as nested mappings."""
    return _plain(dataclasses.asdict(config))


def _plain(values):
    if isinstance(values, dict):
        return {key: _plain(value) for key, value in values.items()}
    return str(values) if isinstance(values, Path) else values


def to_yaml(config) -> str:
    return yaml.safe_dump(config_values(config), sort_keys=False)


def save_config(config, path: Path) -> None:
    files.write_text(path, to_yaml(config))


def from_values(config_class: type[Config], values: dict) -> Config:
    """A config from recorded values, by option name or with its parts as nested mappings; names the
    class no longer has are ignored."""
    known = option_names(config_class)
    flat = _flat(config_class, {name: value for name, value in values.items() if name in known}, "recorded values")
    return _construct(config_class, flat)
