"""Memory strategies: the base API, the registry and the built-in strategies.

Importing this package registers the built-ins. Write your own by subclassing
:class:`Strategy` (see :mod:`strategies.base`) and select it with
``--strategy package.module:Class`` or the ``memsim.strategies`` entry point.
"""

from strategies import batched_dedup_budget, naive_append, per_turn_extract
from strategies.base import Prompt, Strategy, StrategyConfig, TurnContext
from strategies.registry import available, builtins, register, resolve

__all__ = [
    "Prompt",
    "Strategy",
    "StrategyConfig",
    "TurnContext",
    "available",
    "batched_dedup_budget",
    "builtins",
    "naive_append",
    "per_turn_extract",
    "register",
    "resolve",
]
