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

import asyncio
import os
import signal
import sys
from types import FrameType
from typing import Any, Callable, Optional, Tuple

# (name, graceful exit) declared by an integration whose pool replaces this process.
_declared: Optional[Tuple[str, Callable[[], None]]] = None
# How often a draining worker looks whether its last connection is gone.
_DRAIN_POLL_S = 0.05
# How long after uvicorn's keep-alive timeout (which closes idle connections) a draining worker
# waits for a connection with a request in progress, or for a client too busy to have read its
# Connection: close, before it stops anyway (uvicorn's shutdown still lets requests finish).
_DRAIN_MARGIN_S = 5.0


def declare_supervisor(name: str, exit_after_work: Callable[[], None]) -> None:
    """Declare that ``name`` replaces this process when it leaves through ``exit_after_work``
    (called where :func:`exit_gracefully` is, from within the work in progress: it must let
    that work finish). Called in a forked child before its guard is built."""
    global _declared
    _declared = (name, exit_after_work)


def _uvicorn_worker_child() -> bool:
    # The child's stack starts in uvicorn's Process.target (supervisors/multiprocess.py); the
    # reloader's child starts in Server.run instead and is not restarted when it dies.
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "target":
            owner = frame.f_locals.get("self")
            kind = type(owner)
            if kind.__name__ == "Process" and kind.__module__ == "uvicorn.supervisors.multiprocess":
                return True
        frame = frame.f_back
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


def exit_gracefully(draining: Optional[Callable[[], None]] = None) -> None:
    """Ask this process's server to stop the way its supervisor does: ``SIGTERM`` to itself.
    The server finishes the requests in flight before it exits. A declared supervisor's own
    exit instead (see :func:`declare_supervisor`).

    Under uvicorn (``--workers``, or gunicorn's uvicorn worker class) the worker drains first:
    uvicorn's graceful shutdown closes every keep-alive connection with no request in progress,
    and a client that sent its next request on one just then sees it fail. So the worker stops
    accepting under gunicorn (its siblings take new connections), calls ``draining`` (from
    then on the middleware answers ``Connection: close``, so each client closes its connection
    after its response and opens a new one, to a sibling) and sends ``SIGTERM`` once it has no
    connection left (usually within a tenth of a second under load), or at the latest five
    seconds after uvicorn's keep-alive timeout, by which any idle connection was closed by
    uvicorn itself. Called on the event loop's thread."""
    if _declared is not None:
        _declared[1]()
        return
    server = _uvicorn_server()
    try:
        loop = asyncio.get_running_loop() if server is not None else None
    except RuntimeError:  # not on the event loop's thread (a WSGI app in uvicorn's threads)
        loop = None
    if server is None or loop is None:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if "gunicorn.arbiter" in sys.modules:
        # This process's listening socket only: gunicorn's master and the siblings keep
        # theirs. Under uvicorn --workers the parent does not serve the socket, and the port
        # was seen refusing connections while both children restarted: there the worker keeps
        # accepting, and answers those connections with Connection: close too.
        for listener in list(getattr(server, "servers", ())):
            listener.close()
    if draining is not None:
        draining()
    timeout = getattr(getattr(server, "config", None), "timeout_keep_alive", 5)
    deadline = loop.time() + float(timeout) + _DRAIN_MARGIN_S
    connections = getattr(getattr(server, "server_state", None), "connections", ())

    def leave_when_drained() -> None:
        if connections and loop.time() < deadline:
            loop.call_later(_DRAIN_POLL_S, leave_when_drained)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    loop.call_later(_DRAIN_POLL_S, leave_when_drained)


def _uvicorn_server() -> Any:
    """The uvicorn ``Server`` serving this process, found by its ``SIGTERM`` handler (uvicorn
    installs its bound ``handle_exit`` while it serves), else ``None``."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    if type(server).__module__ == "uvicorn.server" and hasattr(server, "servers"):
        return server
    return None
