"""Keep sherlock_ai's own failures away from the monitored code: one guard, ``with
internal_errors:``, and one report per failing site."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Optional, Set, Type

_reported: Set[str] = set()
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


class InternalErrors:
    """``with internal_errors:`` runs its block and, when the block raises an
    :class:`Exception`, reports it once per site (the function and line of the ``with``, e.g.
    ``sherlock_ai.trackers.MemoryTracker._end:197``) and goes on after the block, as sentry-sdk's
    ``capture_internal_exceptions()`` does. One shared object: entering costs two method calls
    (about 0.1 µs), nothing is allocated unless something raises.

    ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit``, a cancelled task) passes through: it is not ours to swallow. Set the
    fallback before the block where the code after it needs a value::

        route = UNMATCHED_ROUTE
        with internal_errors:
            route = router.template(scope)
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        report_internal_error(_site(tb), exc)
        return True


def _site(tb: Optional[TracebackType]) -> str:
    """Where the guarded block is: the first frame of the traceback is the one of the ``with``."""
    if tb is None:
        return "an unknown site"
    frame = tb.tb_frame
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)  # Python 3.11 names the class too
    return f"{frame.f_globals.get('__name__', '?')}.{name}:{tb.tb_lineno}"


#: The guard (see :class:`InternalErrors`).
internal_errors = InternalErrors()
