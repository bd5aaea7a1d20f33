"""The strategy registry: built-ins by name, plug-ins by ``module:Class`` or entry point.

Duplicate names raise: two strategies answering to one name would make results
ambiguous. Built-ins come in two kinds: simulated ones (:func:`builtins`: pure
Python against the mock services, fast, run by every smoke test) and external
ones (:func:`external_strategies`: adapters that drive a real memory library in-process
against ``memsim serve-mock``; they need the ``real`` extra and take seconds per
hundred turns, so the suite tests them on their own). Third-party packages
register in the ``memsim.strategies`` entry-point group
(``name = "package.module:Class"``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from importlib.metadata import entry_points

from sim.config import ConfigError
from strategies.base import Strategy

ENTRY_POINT_GROUP = "memsim.strategies"
_BUILTINS: dict[str, type[Strategy]] = {}
_EXTERNAL: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy], *, external: bool = False) -> type[Strategy]:
    """Class decorator adding a built-in strategy; a duplicate name is an error.

    ``register(cls, external=True)`` adds an adapter of a real library instead.
    """
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a non-empty class attribute 'name'")
    if cls.name in _BUILTINS or cls.name in _EXTERNAL:
        taken = {**_BUILTINS, **_EXTERNAL}[cls.name].__qualname__
        raise ValueError(f"strategy name {cls.name!r} is already registered by {taken}")
    (_EXTERNAL if external else _BUILTINS)[cls.name] = cls
    return cls


def register_external(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator adding a built-in adapter of a real memory library."""
    return register(cls, external=True)


def builtins() -> dict[str, type[Strategy]]:
    """Built-in simulated strategies by name, in registration order."""
    return dict(_BUILTINS)


def external_strategies() -> dict[str, type[Strategy]]:
    """Built-in adapters of real memory libraries by name, in registration order."""
    return dict(_EXTERNAL)


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Every strategy name a scenario may use: built-ins, external adapters, then plug-ins."""
    known = {**_BUILTINS, **_EXTERNAL}
    return [*known, *(n for n in sorted(_plugins()) if n not in known)]


def _load_path(spec: str) -> type[Strategy]:
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"strategy {spec!r}: cannot load: {err}") from None
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise ConfigError(f"strategy {spec!r}: {attr} is not a memsim Strategy subclass")
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise ConfigError(f"strategy {spec!r}: {attr} is abstract (it does not define {missing})")
    return obj


def resolve(spec: str) -> type[Strategy]:
    """The strategy class for a built-in name, a plug-in name or ``module:Class``."""
    if spec in _BUILTINS:
        return _BUILTINS[spec]
    if spec in _EXTERNAL:
        return _EXTERNAL[spec]
    if ":" in spec:
        return _load_path(spec)
    plugins = _plugins()
    if spec in plugins:
        return _load_path(plugins[spec])
    close = difflib.get_close_matches(spec, available(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(available())}"
    raise ConfigError(f"unknown strategy {spec!r}{hint}")
