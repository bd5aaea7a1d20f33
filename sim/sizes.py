"""Numbers of users as people write them: ``2500``, ``10k``, ``1.5k``, ``1M``.

One parser for every ``--users`` list of sizes (``memsim project``, ``memsim
calibrate``) and its inverse for labels (:func:`size_label`).
"""

from __future__ import annotations

import re

from sim.config import ConfigError

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000}


def parse_size(text: str) -> int:
    """A number of users from ``"2500"``, ``"10k"``, ``"1.5k"`` or ``"1M"``."""
    match = _SIZE.match(text.strip().replace("_", ""))
    if not match:
        raise ValueError(text)
    value = float(match[1]) * _SUFFIX[match[2].lower()]
    if value < 1 or value != int(value):
        raise ValueError(text)
    return int(value)


def parse_sizes(spec: str) -> list[int]:
    """Sizes separated by commas, sorted and without repeats; one-line error if bad."""
    try:
        sizes = {parse_size(part) for part in spec.split(",") if part.strip()}
    except ValueError as err:
        raise ConfigError(
            f"--users: {err.args[0].strip()!r}: expected a number of users such as "
            "2500, 10k, 1.5k or 1M (comma-separated)"
        ) from None
    if not sizes:
        raise ConfigError(f"--users: {spec!r}: expected numbers of users such as 1k,10k,1M")
    return sorted(sizes)


def size_label(users: int) -> str:
    """``1000`` → ``1k``, ``1500000`` → ``1.5M``, ``2345`` → ``2,345``."""
    for unit, suffix in ((1_000_000, "M"), (1_000, "k")):
        if users >= unit and (users * 10) % unit == 0:
            return f"{users / unit:g}{suffix}"
    return f"{users:,}"
