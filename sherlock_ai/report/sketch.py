"""Summaries whose size does not grow with the number of records: value distributions and
time series in buckets."""

from __future__ import annotations

import math
from collections import Counter
from typing import Dict, Iterable, List, Optional, Set, Tuple

# A distribution keeps counts of its exact values up to this many distinct ones, then
# buckets them.
EXACT_VALUES = 4096
# Values wait in a list until this many are pending: counting a batch at once (Counter's C
# loop) costs a fraction of counting each value as it comes.
BATCH = 4096
# Relative width of a bucket: quantiles of a bucketed distribution are within 1% of the truth.
_GAMMA = 1.02
_LOG_GAMMA = math.log(_GAMMA)


class Distribution:
    """Count, sum, minimum, maximum and quantiles of a stream of numbers (of either sign).

    Exact while it holds at most :data:`EXACT_VALUES` distinct values; past that, values are
    kept as counts in logarithmic buckets and quantiles are within 1% (relative) of the true
    value. :meth:`add` (or appending to ``pending`` and calling :meth:`flush` now and then)
    takes a value; the figures count every value added so far."""

    __slots__ = ("_count", "_total", "_low", "_high", "exact", "buckets", "pending")

    def __init__(self) -> None:
        self._count = 0
        self._total = 0.0
        self._low = math.inf
        self._high = -math.inf
        self.exact: Optional[Counter[float]] = Counter()
        self.buckets: Counter[int] = Counter()
        self.pending: List[float] = []

    def add(self, value: float) -> None:
        self.pending.append(value)
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Count the pending values."""
        batch = self.pending
        if not batch:
            return
        self._count += len(batch)
        self._total += sum(batch)
        low, high = min(batch), max(batch)
        if low < self._low:
            self._low = low
        if high > self._high:
            self._high = high
        exact = self.exact
        if exact is not None:
            exact.update(batch)
            if len(exact) <= EXACT_VALUES:
                batch.clear()
                return
            self.exact = None
            batch_counts = exact
        else:
            batch_counts = Counter(batch)
        # Emptied in place: the fold holds this list's append.
        batch.clear()
        buckets = self.buckets
        for value, n in batch_counts.items():
            key = _key(value)
            buckets[key] = buckets.get(key, 0) + n

    @property
    def count(self) -> int:
        self.flush()
        return self._count

    @property
    def total(self) -> float:
        self.flush()
        return self._total

    @property
    def low(self) -> float:
        self.flush()
        return self._low

    @property
    def high(self) -> float:
        self.flush()
        return self._high

    @property
    def values(self) -> Optional[List[float]]:
        """Every value, in order, while the distribution is exact; ``None`` once bucketed."""
        self.flush()
        if self.exact is None:
            return None
        return sorted(self.exact.elements())

    @property
    def mean(self) -> Optional[float]:
        count = self.count
        return self._total / count if count else None

    def quantile(self, share: float) -> Optional[float]:
        """The ``share`` quantile (nearest rank), ``None`` when empty."""
        count = self.count
        if not count:
            return None
        rank = max(1, math.ceil(share * count))
        seen = 0
        if self.exact is not None:
            for value in sorted(self.exact):
                seen += self.exact[value]
                if seen >= rank:
                    return value
            return self._high
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return min(max(_value(key), self._low), self._high)
        return self._high


def _key(value: float) -> int:
    # 0 for values under a byte or a microsecond; signed bucket numbers for the others.
    size = abs(value)
    if size < 1e-6:
        return 0
    key = int(math.log(size * 1e6) / _LOG_GAMMA) + 1
    return key if value > 0 else -key


def _value(key: int) -> float:
    if key == 0:
        return 0.0
    size = math.exp((abs(key) - 0.5) * _LOG_GAMMA) / 1e6
    return size if key > 0 else -size


class TimeBuckets:
    """Sums per time bucket and series: the bucket width starts at about a millisecond and
    doubles (merging neighbours) whenever there are more than ``limit`` buckets, so any span of time
    fits in at most ``limit`` buckets. Each cell holds a list of sums of equal length."""

    def __init__(self, width: int = 3, limit: int = 600) -> None:
        self.size = width
        self.limit = limit
        self.step = 1 / 1024
        self.cells: Dict[Tuple[int, object], List[float]] = {}
        self.slots: Set[int] = set()

    def add(self, stamp: float, series: object, values: Iterable[float]) -> None:
        cell = self.cell(stamp, series)
        for i, value in enumerate(values):
            cell[i] += value

    def cell(self, stamp: float, series: object) -> List[float]:
        """The sums of ``series`` in the bucket of ``stamp`` (made when missing, which may
        widen the buckets: ``step`` and ``cells`` change then)."""
        key = (int(stamp // self.step), series)
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = [0.0] * self.size
            self.slots.add(key[0])
            if len(self.slots) > self.limit:
                self._widen()
                cell = self.cells[(int(stamp // self.step), series)]
        return cell

    def coarsen(self, step: float) -> None:
        """Widen the buckets to at least ``step`` seconds (the resolution of the times)."""
        self._widen(step)

    def _widen(self, at_least: float = 0.0) -> None:
        while len(self.slots) > self.limit or self.step < at_least:
            self.step *= 2
            cells: Dict[Tuple[int, object], List[float]] = {}
            for (slot, series), cell in self.cells.items():
                merged = cells.setdefault((slot // 2, series), [0.0] * self.size)
                for i, value in enumerate(cell):
                    merged[i] += value
            self.cells = cells
            self.slots = {slot for slot, _ in cells}

    def series(self) -> Dict[object, List[Tuple[float, List[float]]]]:
        """Each series' buckets in time order: (start of the bucket, its sums)."""
        out: Dict[object, List[Tuple[float, List[float]]]] = {}
        for (slot, series), cell in sorted(self.cells.items(), key=lambda item: item[0][0]):
            out.setdefault(series, []).append((slot * self.step, cell))
        return out
