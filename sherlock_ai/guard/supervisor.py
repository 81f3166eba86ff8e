"""Who replaces this process when it exits, for ``on_rss_limit="recycle"``; and the graceful
exit itself.

- gunicorn (sync, gthread, and uvicorn's worker class): the arbiter starts a new worker for
  every one that exits. A worker's ``SIGTERM`` handler is gunicorn's graceful path (sync and
  gthread set ``alive = False``: the current requests finish, then the worker leaves its loop;
  the uvicorn worker class lets uvicorn's server shut down gracefully).
- uvicorn with ``--workers N``: the parent's ``keep_subprocess_alive`` starts a new child for
  each one that died; the child's ``SIGTERM`` handler is uvicorn's graceful shutdown (it stops
  accepting, lets open requests finish, then exits).
- anything else (plain ``uvicorn app:app``, ``--reload``, ``flask run``, a bare WSGI server):
  nobody restarts the process, so recycling would stop the service.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Optional


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
    under both servers, or at its first request, still on the server's stack)."""
    if "gunicorn.arbiter" in sys.modules:
        return "gunicorn"
    if "uvicorn.supervisors.multiprocess" in sys.modules and _uvicorn_worker_child():
        return "uvicorn --workers"
    return None


def exit_gracefully() -> None:
    """Ask this process's server to stop the way its supervisor does: ``SIGTERM`` to itself.
    The server finishes the requests in flight before it exits."""
    os.kill(os.getpid(), signal.SIGTERM)
