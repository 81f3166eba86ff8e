"""Who replaces this process when it exits, for ``on_rss_limit="recycle"``; and the graceful
exit itself.

- gunicorn (sync, gthread, and uvicorn's worker class): the arbiter starts a new worker for
  every one that exits. A worker's ``SIGTERM`` handler is gunicorn's graceful path (sync and
  gthread set ``alive = False``: the current requests finish, then the worker leaves its loop;
  the uvicorn worker class lets uvicorn's server shut down gracefully).
- uvicorn with ``--workers N``: the parent's ``keep_subprocess_alive`` starts a new child for
  each one that died; the child's ``SIGTERM`` handler is uvicorn's graceful shutdown (it stops
  accepting, lets open requests finish, then exits).
- Celery's prefork pool: the pool starts a new child for each one that leaves its loop; the
  Celery integration declares it in each child (:func:`declare_supervisor`) with the exit
  that lets the child finish its current task first.
- anything else (plain ``uvicorn app:app``, ``--reload``, ``flask run``, a bare WSGI server):
  nobody restarts the process, so recycling would stop the service.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Optional, Tuple

# (name, graceful exit) declared by an integration whose pool replaces this process.
_declared: Optional[Tuple[str, Callable[[], None]]] = None


def declare_supervisor(name: str, exit_after_work: Callable[[], None]) -> None:
    """Declare that ``name`` replaces this process when it leaves through ``exit_after_work``
    (called where :func:`exit_gracefully` is, from within the work in progress: it must let
    that work finish). Called in a forked child before its guard is built."""
    global _declared
    _declared = (name, exit_after_work)


def _uvicorn_worker_child() -> bool:
    # The child's stack starts in uvicorn's Process.target (supervisors/multiprocess.py); the
    # reloader's child starts in Server.run instead and is not restarted when it dies.
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "target":
            owner = frame.f_locals.get("self")
            kind = type(owner)
            if kind.__name__ == "Process" and kind.__module__ == "uvicorn.supervisors.multiprocess":
                return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def find_supervisor() -> Optional[str]:
    """``"gunicorn"`` or ``"uvicorn --workers"`` when one of them will replace this process
    after it exits, else ``None``. Called where the middleware is set up (at import of the app
    under both servers, or at its first request, still on the server's stack), or where an
    integration declared one (:func:`declare_supervisor`)."""
    if _declared is not None:
        return _declared[0]
    if "gunicorn.arbiter" in sys.modules:
        return "gunicorn"
    if "uvicorn.supervisors.multiprocess" in sys.modules and _uvicorn_worker_child():
        return "uvicorn --workers"
    return None


def exit_gracefully() -> None:
    """Ask this process's server to stop the way its supervisor does: ``SIGTERM`` to itself.
    The server finishes the requests in flight before it exits. A declared supervisor's own
    exit instead (see :func:`declare_supervisor`)."""
    if _declared is not None:
        _declared[1]()
        return
    os.kill(os.getpid(), signal.SIGTERM)
