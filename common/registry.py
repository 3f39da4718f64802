"""One registration style for every kind of pluggable part: audio encoders, face encoders, face
detectors, corpora.

A registered class carries what the rest of the project derives from it: its ``name`` (the value
of its command-line choice), ``Options`` (a dataclass of its own options, with their defaults and
help, that become command-line options of the stages that build it), and whatever its kind adds
(a weights hint, its part of a folder name). ``Registry.register`` is a class decorator; adding a
part is one module whose class is decorated, nothing else.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

from common.errors import ProjectError

Registered = TypeVar("Registered")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a part that has none."""


class Registry(Generic[Registered]):
    """The registered classes of one kind, by name, in the order they were registered."""

    def __init__(self, kind: str, error: type[ProjectError] = ProjectError):
        self.kind, self.error = kind, error
        self._entries: dict[str, type[Registered]] = {}

    def register(self, registered: type[Registered]) -> type[Registered]:
        name = registered.name
        if name in self._entries and self._entries[name] is not registered:
            raise TypeError(f"two {self.kind}s are called {name!r}: {self._entries[name]} and {registered}")
        if not dataclasses.is_dataclass(getattr(registered, "Options", None)):
            raise TypeError(f"{registered} has no Options dataclass (common.registry.NoOptions when it has none)")
        self._entries[name] = registered
        return registered

    def __getitem__(self, name: str) -> type[Registered]:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self):
        return self._entries.items()

    def choices(self) -> str:
        """The names for a help text: 'a, b or c'."""
        names = list(self._entries)
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def import_package_modules(package: str) -> None:
    """Import every module of a package, so that the classes they register are registered."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{info.name}")
