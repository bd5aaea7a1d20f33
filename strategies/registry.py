"""The strategy registry: built-ins by name, plug-ins by ``module:Class`` or entry point.

Duplicate names raise: two strategies answering to one name would make results
ambiguous. Third-party packages register in the ``memsim.strategies``
entry-point group (``name = "package.module:Class"``).
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from sim.config import ConfigError
from strategies.base import Strategy

ENTRY_POINT_GROUP = "memsim.strategies"
_BUILTINS: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator adding a built-in strategy; a duplicate name is an error."""
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a non-empty class attribute 'name'")
    if cls.name in _BUILTINS:
        taken = _BUILTINS[cls.name].__qualname__
        raise ValueError(f"strategy name {cls.name!r} is already registered by {taken}")
    _BUILTINS[cls.name] = cls
    return cls


def builtins() -> dict[str, type[Strategy]]:
    """Built-in strategies by name, in registration order."""
    return dict(_BUILTINS)


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Every strategy name a scenario may use: built-ins, then installed plug-ins."""
    return [*_BUILTINS, *(n for n in sorted(_plugins()) if n not in _BUILTINS)]


def _load_path(spec: str) -> type[Strategy]:
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"strategy {spec!r}: cannot load: {err}") from None
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise ConfigError(f"strategy {spec!r}: {attr} is not a memsim Strategy subclass")
    return obj


def resolve(spec: str) -> type[Strategy]:
    """The strategy class for a built-in name, a plug-in name or ``module:Class``."""
    if spec in _BUILTINS:
        return _BUILTINS[spec]
    if ":" in spec:
        return _load_path(spec)
    plugins = _plugins()
    if spec in plugins:
        return _load_path(plugins[spec])
    close = difflib.get_close_matches(spec, available(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(available())}"
    raise ConfigError(f"unknown strategy {spec!r}{hint}")
