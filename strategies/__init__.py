"""Memory strategies: the strategy API, the registry and the built-in strategies.

Every module of this package that defines a strategy registers it on import;
importing the package imports them all (in name order). Write your own against
:mod:`strategies.api` (subclass its :class:`Strategy`) and select it with
``--strategy package.module:Class`` or the ``memsim.strategies`` entry point.
"""

import importlib
import pkgutil

from strategies.api import Prompt, Strategy, StrategyConfig, TurnContext, register
from strategies.registry import available, builtins, external_strategies, resolve

_SUPPORT = {"api", "base", "registry", "history", "jobs"}  # the API's modules: no strategy

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
