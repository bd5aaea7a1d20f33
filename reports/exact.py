"""Exact figures over records read in pieces: sums as ``math.fsum``, percentiles as numpy's.

A large run's records never sit in memory at once (:mod:`reports.spool` reads them
back a shard at a time), yet ``summary.json`` must hold the same bytes as if they
had: the same correctly rounded sums and the same percentiles. Two tools make
that possible with memory that does not grow with the run:

* :class:`ExactSum` keeps the exact sum of every float added as one Python
  integer (in units of 2**-1126, below the smallest double); its value is that
  integer divided by the unit, which Python rounds correctly, exactly as
  ``math.fsum`` rounds the same sum. No value is ever lost to rounding, so the
  order and grouping of the pieces do not matter.
* :class:`Percentiles` finds order statistics in two passes: the first counts the
  values into 2**20 bins of their bit patterns (order-preserving), the second
  keeps only the values of the bins that hold the wanted ranks. The percentile is
  then interpolated by numpy itself (``np.quantile`` of the two neighbours at the
  fraction numpy's linear method computes), so it equals ``np.percentile`` of all
  the values. A series of up to :data:`Percentiles.KEEP` values is simply kept
  and needs no second pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

_UNIT_BITS = 1126
"""Every finite double is an integer multiple of 2**-1126 (53-bit mantissa, exponent >= -1073)."""


class ExactSum:
    """The exact sum of float64 values added in any order and grouping.

    ``value`` equals ``math.fsum`` of every value added: both are the correctly
    rounded exact sum.
    """

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0  # in units of 2**-1126

    def add(self, values: Iterable[float] | np.ndarray) -> None:
        """Add every value (finite floats)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if not len(v):
            return
        fraction, exponent = np.frexp(v)  # v = fraction * 2**exponent, 0.5 <= |fraction| < 1
        mantissa = np.ldexp(fraction, 53).astype(np.int64)  # exact: |mantissa| < 2**53
        shift = exponent.astype(np.int64) + 1073  # v = mantissa * 2**(shift - 1126), shift >= 0
        order = np.argsort(shift, kind="stable")
        shift, mantissa = shift[order], mantissa[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(shift)) + 1))
        # Split so that no int64 sum can overflow: |high| < 2**27, 0 <= low < 2**26.
        high = np.add.reduceat(mantissa >> 26, starts)
        low = np.add.reduceat(mantissa & ((1 << 26) - 1), starts)
        for s, h, lo in zip(shift[starts].tolist(), high.tolist(), low.tolist(), strict=True):
            self.total += ((h << 26) + lo) << s

    @property
    def value(self) -> float:
        """The correctly rounded sum (``math.fsum`` of the values)."""
        return self.total / (1 << _UNIT_BITS)


def percentile(sorted_pair: tuple[float, float], n: int, q: float) -> float:
    """``np.percentile`` of ``n`` values at ``q`` from the two order statistics it reads.

    ``sorted_pair``: the values at the ranks :func:`ranks` gives. numpy's linear
    method interpolates them at the fraction of ``(n - 1) * q / 100``; the same
    fraction handed to ``np.quantile`` of the pair interpolates them the same way.
    """
    virtual = (n - 1) * (q / 100)
    fraction = virtual - math.floor(virtual) if virtual < n - 1 else 0.0
    pair = np.asarray(sorted_pair, dtype=np.float64)
    return float(np.quantile(pair, fraction))


def ranks(n: int, q: float) -> tuple[int, int]:
    """The 0-based ranks of the two values ``np.percentile`` of ``n`` values reads at ``q``."""
    virtual = (n - 1) * (q / 100)
    if virtual >= n - 1:
        return n - 1, n - 1
    below = math.floor(virtual)
    return below, below + 1


def _keys(values: np.ndarray) -> np.ndarray:
    """Unsigned keys in the order of the float64 ``values`` (IEEE bits, sign folded)."""
    bits = values.view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


class Percentiles:
    """Exact ``np.percentile`` values of a series seen in pieces, with bounded memory.

    Feed every piece to :meth:`count`; if :attr:`needs_second_pass`, feed the same
    pieces again, in any order, to :meth:`collect`; then read :meth:`at`.
    """

    BINS_BITS = 20
    KEEP = 2_000_000
    """Up to this many values are kept as they come (no second pass)."""

    def __init__(self, qs: Sequence[float], keep: int | None = None) -> None:
        self.qs = tuple(qs)
        self.keep = self.KEEP if keep is None else keep
        self.n = 0
        self.kept: list[np.ndarray] | None = []
        self.counts: np.ndarray | None = None
        self.wanted: dict[int, list[np.ndarray]] = {}  # bin → values collected
        self.below: dict[int, int] = {}  # bin → values in lower bins

    def count(self, values: np.ndarray) -> None:
        """First pass: one piece's values (float64)."""
        values = np.asarray(values, dtype=np.float64)
        self.n += len(values)
        if self.kept is not None:
            self.kept.append(values)
            if self.n <= self.keep:
                return
            pieces, self.kept = self.kept, None
            for piece in pieces:
                self._bin(piece)
            return
        self._bin(values)

    def _bin(self, values: np.ndarray) -> None:
        bins = (_keys(values) >> np.uint64(64 - self.BINS_BITS)).astype(np.int64)
        counts = np.bincount(bins, minlength=1 << self.BINS_BITS)
        self.counts = counts if self.counts is None else self.counts + counts

    @property
    def needs_second_pass(self) -> bool:
        """Whether the values were too many to keep: :meth:`collect` must see them again."""
        if self.kept is not None:
            return False
        if not self.wanted:
            self._plan()
        return True

    def _plan(self) -> None:
        assert self.counts is not None
        cumulative = np.cumsum(self.counts)
        for q in self.qs:
            for rank in ranks(self.n, q):
                b = int(np.searchsorted(cumulative, rank, side="right"))
                self.wanted.setdefault(b, [])
                self.below[b] = int(cumulative[b - 1]) if b else 0

    def collect(self, values: np.ndarray) -> None:
        """Second pass: one piece's values again."""
        values = np.asarray(values, dtype=np.float64)
        bins = (_keys(values) >> np.uint64(64 - self.BINS_BITS)).astype(np.int64)
        for b, found in self.wanted.items():
            found.append(values[bins == b])

    def at(self) -> list[float | None]:
        """``np.percentile`` of all the values at each of ``qs``; ``None`` for no values."""
        if not self.n:
            return [None] * len(self.qs)
        if self.kept is not None:
            values = np.concatenate(self.kept) if len(self.kept) != 1 else self.kept[0]
            return [float(np.percentile(values, q)) for q in self.qs]
        sorted_bins = {b: np.sort(np.concatenate(found)) for b, found in self.wanted.items()}
        cumulative = np.cumsum(self.counts)

        def value(rank: int) -> float:
            b = int(np.searchsorted(cumulative, rank, side="right"))
            return float(sorted_bins[b][rank - self.below[b]])

        out: list[float | None] = []
        for q in self.qs:
            low, high = ranks(self.n, q)
            out.append(percentile((value(low), value(high)), self.n, q))
        return out


class CountedPercentiles:
    """Exact ``np.percentile`` values of non-negative integers, kept as value counts.

    For series of small integers (memories per user, memory tokens per prompt):
    memory grows with the largest value, never with the number of values.
    """

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)

    def count(self, values: np.ndarray) -> None:
        """Add one piece's values (integers >= 0)."""
        counts = np.bincount(np.asarray(values, dtype=np.int64))
        if len(counts) > len(self.counts):
            counts[: len(self.counts)] += self.counts
            self.counts = counts
        else:
            self.counts[: len(counts)] += counts

    @property
    def n(self) -> int:
        """How many values were added."""
        return int(self.counts.sum())

    def total(self) -> int:
        """The sum of every value added (exact)."""
        return int(np.dot(np.arange(len(self.counts), dtype=np.int64), self.counts))

    def at(self, q: float) -> float | None:
        """``np.percentile`` of every value added at ``q``; ``None`` for no values."""
        n = self.n
        if not n:
            return None
        cumulative = np.cumsum(self.counts)
        low, high = (float(np.searchsorted(cumulative, r, side="right")) for r in ranks(n, q))
        return percentile((low, high), n, q)

    def max(self) -> int:
        """The largest value added (0 for none)."""
        nonzero = np.flatnonzero(self.counts)
        return int(nonzero[-1]) if len(nonzero) else 0
