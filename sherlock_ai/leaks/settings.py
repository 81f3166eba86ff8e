"""The leak watch's settings, checked when a watch is created."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

from ..parameters import from_keywords


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class LeakWatchSettings:
    """Settings of a :class:`LeakWatch`, checked when it is created.

    - ``trace_share``: share of requests traced while nothing is suspected (0 < share <= 1).
      The cost: a traced request runs several times slower (tracemalloc taxes every
      allocation), so the mean cost grows by about ``trace_share`` times that tax. Lower is
      cheaper and slower to notice a leak that starts later; windows to confirm a suspect,
      and windows the RSS's growth calls early, come on top.
    - ``suspect_trace_share``: share of requests traced while a route is suspected (for
      ``evidence_windows`` windows after a route was flagged, a flag was dropped or a
      candidate needed confirming), and at most the share that windows called early by
      the RSS's growth reach. Never below ``trace_share``.
    - ``window_requests``: requests per tracing window.
    - ``snapshot_every``: requests between two snapshots in a window (at least 3 per window).
    - ``warmup_requests``: requests before the first window (start-up allocations settle).
    - ``min_bytes_per_request``: smallest retention per request that is reported.
    - ``min_requests``: requests of a route that the evidence must span.
    - ``frames``: traceback frames per traced allocation (1 names the allocating line; the
      request counts name the route).
    - ``max_routes``: routes counted separately; later ones share :data:`OVERFLOW_ROUTE`.
    - ``evidence_windows``: how many recent windows an estimate pools (more, up to 8 times
      as many, for a route whose requests in them are fewer than ``min_requests``).
    - ``native_min_bytes_per_request``: smallest growth of the RSS per request, not explained
      by the traced sites, that is reported as a native leak (memory tracemalloc cannot see).
    """

    trace_share: float = 0.025
    window_requests: int = 150
    snapshot_every: int = 25
    warmup_requests: int = 100
    min_bytes_per_request: int = 256
    min_requests: int = 20
    frames: int = 1
    max_routes: int = 1000
    evidence_windows: int = 4
    native_min_bytes_per_request: int = 16384
    suspect_trace_share: float = 0.25

    def __post_init__(self) -> None:
        for name in ("trace_share", "suspect_trace_share"):
            share = getattr(self, name)
            if isinstance(share, bool) or not isinstance(share, (int, float)) \
                    or not 0 < share <= 1:
                raise ValueError(f"{name} must be a number in (0, 1], got {share!r}")
        _check_int("snapshot_every", self.snapshot_every, 1)
        _check_int("window_requests", self.window_requests, 3 * self.snapshot_every
                   if isinstance(self.snapshot_every, int) else 3)
        _check_int("warmup_requests", self.warmup_requests, 0)
        for name in ("min_bytes_per_request", "min_requests", "frames", "max_routes",
                     "evidence_windows", "native_min_bytes_per_request"):
            _check_int(name, getattr(self, name), 1)

    @classmethod
    def from_kwargs(cls, settings: Dict[str, Any]) -> LeakWatchSettings:
        """Settings from keyword arguments, refusing unknown names with the accepted ones."""
        return from_keywords(cls, settings, "LeakWatch setting(s)")

    @property
    def scout_requests(self) -> int:
        """Requests of a window while nothing is suspected: two thirds of
        ``window_requests`` (at least three snapshots). The first window, confirming
        windows and windows while a route is suspected take ``window_requests``."""
        points = self.window_requests // self.snapshot_every
        return max(3, points * 2 // 3) * self.snapshot_every

    @property
    def pause_requests(self) -> int:
        """Untraced requests between two scheduled windows while nothing is suspected."""
        return _pause(self.scout_requests, self.trace_share)

    @property
    def suspect_pause_requests(self) -> int:
        """Untraced requests between two windows while a route is suspected (and the
        shortest pause that the RSS's growth can end early)."""
        return _pause(self.window_requests, max(self.trace_share, self.suspect_trace_share))


def _pause(window: int, share: float) -> int:
    return round(window * (1 - share) / share)
