"""The labels the exporters give a measured request's metrics."""

from __future__ import annotations

from typing import Optional


def status_class(status: Optional[int]) -> str:
    """``"2xx"`` ... ``"5xx"`` for metrics labels; ``"none"`` when no response started."""
    if isinstance(status, int) and 100 <= status <= 599:
        return f"{status // 100}xx"
    return "none"
