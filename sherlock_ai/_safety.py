"""Keep sherlock_ai's own failures away from the monitored code."""

from __future__ import annotations

import sys
import threading

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
