"""Memory strategies: the base API, the registry and the built-in strategies.

Every module of this package that defines a strategy registers it on import;
importing the package imports them all (in name order). Write your own by
subclassing :class:`Strategy` (see :mod:`strategies.base`) and select it with
``--strategy package.module:Class`` or the ``memsim.strategies`` entry point.
"""

import importlib
import pkgutil

from strategies.base import Prompt, Strategy, StrategyConfig, TurnContext
from strategies.registry import available, builtins, external_strategies, register, resolve

_SUPPORT = {"base", "registry", "history", "jobs"}  # modules that define no strategy

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _SUPPORT:
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "Prompt",
    "Strategy",
    "StrategyConfig",
    "TurnContext",
    "available",
    "builtins",
    "external_strategies",
    "register",
    "resolve",
]
