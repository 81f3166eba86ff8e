"""Summaries whose size does not grow with the number of records: value distributions and
time series in buckets."""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Tuple

# A distribution keeps its values exactly up to this many, then buckets them.
EXACT_VALUES = 4096
# Relative width of a bucket: quantiles of a bucketed distribution are within 1% of the truth.
_GAMMA = 1.02
_LOG_GAMMA = math.log(_GAMMA)


class Distribution:
    """Count, sum, minimum, maximum and quantiles of a stream of numbers (of either sign).

    Exact while it holds at most :data:`EXACT_VALUES` values; past that, values are kept as
    counts in logarithmic buckets and quantiles are within 1% (relative) of the true value."""

    __slots__ = ("count", "total", "low", "high", "values", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.values: Optional[List[float]] = []
        self.buckets: Dict[int, int] = {}

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        values = self.values
        if values is not None:
            values.append(value)
            if len(values) > EXACT_VALUES:
                self.values = None
                for v in values:
                    self._bucket(v)
            return
        self._bucket(value)

    def _bucket(self, value: float) -> None:
        key = _key(value)
        self.buckets[key] = self.buckets.get(key, 0) + 1

    @property
    def mean(self) -> Optional[float]:
        return self.total / self.count if self.count else None

    def quantile(self, share: float) -> Optional[float]:
        """The ``share`` quantile (nearest rank), ``None`` when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(share * self.count))
        if self.values is not None:
            self.values.sort()
            return self.values[rank - 1]
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                return min(max(_value(key), self.low), self.high)
        return self.high


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
        self.slots: set = set()

    def add(self, stamp: float, series: object, values: Iterable[float]) -> None:
        slot = int(stamp // self.step)
        cell = self.cells.get((slot, series))
        if cell is None:
            cell = self.cells[(slot, series)] = [0.0] * self.size
            self.slots.add(slot)
            if len(self.slots) > self.limit:
                self._widen()
                cell = self.cells[(int(stamp // self.step), series)]
        for i, value in enumerate(values):
            cell[i] += value

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
