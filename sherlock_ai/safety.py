"""Keep sherlock_ai's own failures away from the monitored code."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")

_reported: set[str] = set()
_lock = threading.Lock()


def report_internal_error(where: str, exc: BaseException) -> None:
    """Tell the user once per site that monitoring failed; never raise."""
    try:
        with _lock:
            if where in _reported:
                return
            _reported.add(where)
        sys.stderr.write(
            f"sherlock_ai: monitoring failed in {where} ({type(exc).__name__}: {exc}); "
            "the monitored code is unaffected, further failures here are not reported\n"
        )
    except Exception:  # noqa: BLE001 - stderr itself may be gone
        pass


class guarded:
    """``with guarded("where"):`` runs its block and, when the block raises an
    :class:`Exception`, reports it through :func:`report_internal_error` and goes on after the
    block (in the spirit of sentry-sdk's ``capture_internal_exceptions()``).

    ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit``, a cancelled task) passes through: it is not ours to swallow. Set the
    fallback before the block where the code after it needs a value::

        route = UNMATCHED_ROUTE
        with guarded("asgi route name"):
            route = router.template(scope)

    Entering costs a small object and two calls (well under a microsecond); on the
    per-request path, sites keep a plain ``try``/``except`` (free in Python 3.11 until
    something raises) and say so.
    """

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: Optional[BaseException], tb: object) -> bool:
        if isinstance(exc, Exception):
            report_internal_error(self.where, exc)
            return True
        return False


def guarded_call(where: str, fn: Callable[..., T], *args: Any, default: Optional[T] = None,
                 **kwargs: Any) -> Optional[T]:
    """``fn(*args, **kwargs)``, or ``default`` when it raises an :class:`Exception` (reported
    through :func:`report_internal_error` as ``where``)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
        report_internal_error(where, exc)
        return default
