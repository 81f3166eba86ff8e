"""The record of one measurement that ended, handed to every consumer."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

SUCCESS = "SUCCESS"
ERROR = "ERROR"
#: A Celery task run that asked to run again (``self.retry()``): not a failure, always kept.
RETRY = "RETRY"


class Measurement:
    """What one tracked block measured. Sizes in bytes, times in seconds.

    - ``rss``: process RSS at the end (process-wide: other threads count too).
    - ``rss_change``: RSS at the end minus RSS at the start.
    - ``traced``: Python allocations made during the block and still alive at its end
      (tracemalloc level at end minus at start; may be negative). ``None`` without tracing.
    - ``traced_peak``: highest tracemalloc level during the block minus the level at its start.
    - ``concurrent``: how many other tracked blocks (other threads or tasks, not nested ones)
      overlapped this one in time; their allocations are in this block's figures too.
    - ``below_threshold``: a successful block faster than its ``min_duration`` (not logged);
      when no sink asked for such blocks its closing RSS was not read (``rss`` is ``None``).
    - ``attributes``: what else the producer knows (HTTP method, route, status code, CPU...).
    - ``protocol``: ``"asgi"``, ``"wsgi"``... for a web request (the end of a request its
      consumers were told ``request_started`` of), ``None`` for a function or block.
    - ``endpoint``: the function that served a web request, when its framework reports it
      (the leak watch reads it). Neither is in :meth:`as_dict`.
    """

    # A plain slotted class: built once per tracked call, so its construction cost counts.
    __slots__ = ("kind", "name", "status", "duration", "level", "request_id", "error", "rss",
                 "rss_change", "traced", "traced_peak", "concurrent", "below_threshold",
                 "attributes", "endpoint", "protocol")

    def __init__(
        self,
        kind: str,
        name: str,
        status: str,
        duration: float,
        level: int,
        request_id: str = "",
        error: Optional[str] = None,
        rss: Optional[int] = None,
        rss_change: Optional[int] = None,
        traced: Optional[int] = None,
        traced_peak: Optional[int] = None,
        concurrent: int = 0,
        below_threshold: bool = False,
        attributes: Optional[Dict[str, Any]] = None,
        endpoint: Optional[Callable[..., Any]] = None,
        protocol: Optional[str] = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.status = status
        self.duration = duration
        self.level = level
        self.request_id = request_id
        self.error = error
        self.rss = rss
        self.rss_change = rss_change
        self.traced = traced
        self.traced_peak = traced_peak
        self.concurrent = concurrent
        self.below_threshold = below_threshold
        self.attributes: Dict[str, Any] = attributes if attributes is not None else {}
        self.endpoint = endpoint
        self.protocol = protocol

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"Measurement({fields})"

    def as_dict(self) -> Dict[str, Any]:
        """The structured fields for JSON logs and exporters (``None`` figures left out)."""
        out: Dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "duration": round(self.duration, 6),
            "concurrent": self.concurrent,
        }
        for key in ("error", "rss", "rss_change", "traced", "traced_peak"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.attributes)
        return out
