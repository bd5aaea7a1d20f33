"""Hidden ground truth that raises when a strategy reads it (for the strategy tests).

``Sealed*`` replace the workload's and the store's types; their ground-truth
fields raise while :attr:`Seal.strategy_running` is set and
:attr:`Seal.oracle_running` is not. Wrap a strategy's methods with
``as_flag("strategy_running", fn)`` and the harness's (the mock LLM, the store)
with ``as_flag("oracle_running", fn)``.
"""

from sim.llm import Factoid
from sim.store import Memory
from sim.workload import Message


class Seal:
    strategy_running = False
    oracle_running = False


def sealed(name):
    slot = "_sealed_" + name

    def get(self):
        if Seal.strategy_running and not Seal.oracle_running:
            raise AssertionError(f"the strategy read hidden ground truth: .{name}")
        return getattr(self, slot)

    def put(self, value):
        setattr(self, slot, value)

    return property(get, put)


class SealedMessage(Message):
    __slots__ = ("_sealed_facts", "_sealed_probe")
    facts = sealed("facts")
    probe = sealed("probe")


class SealedMemory(Memory):
    __slots__ = ("_sealed_facts", "_sealed_owner")
    facts = sealed("facts")
    owner = sealed("owner")


class SealedFactoid(Factoid):
    __slots__ = ("_sealed_facts",)
    facts = sealed("facts")


def as_flag(flag, fn):
    """``fn`` run with ``Seal.<flag>`` set."""

    def wrapped(*args, **kwargs):
        before = getattr(Seal, flag)
        setattr(Seal, flag, True)
        try:
            return fn(*args, **kwargs)
        finally:
            setattr(Seal, flag, before)

    return wrapped
