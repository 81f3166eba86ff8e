"""gunicorn server hooks that tell a worker's death from the arbiter, with its signal.

In ``gunicorn.conf.py``::

    import sherlock_ai
    from sherlock_ai.integrations.gunicorn_hooks import child_exit, worker_exit  # noqa: F401

    sherlock_ai.sherlock_ai()  # the same logging set-up as the app: the arbiter's line goes there

``child_exit`` runs in the arbiter right after it reaped a worker: when the worker's flight
record (see :mod:`sherlock_ai.deaths`) is still open, it claims it and writes the
``WORKER DIED`` line with the signal or exit code from the arbiter's wait status. gunicorn hands
that status to its own ``Worker (pid:N) was sent SIGKILL!`` and ``exited with code N`` log
records, not to the hook; a filter on its ``gunicorn.error`` logger, added when this module is
imported, keeps it for ``child_exit`` (it never changes or drops a record). ``worker_exit``
runs in the worker as it leaves gracefully and closes its record.

Importing this module also tells the workers about to be forked that their supervisor tells
deaths (an environment variable they inherit), so their siblings leave the telling to it for a
few seconds.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, Dict, Optional, Tuple

from ..deaths import recorder
from ..safety import internal_errors

__all__ = ["child_exit", "worker_exit"]

_SENT = "Worker (pid:%s) was sent %s!"
_EXITED = "Worker (pid:%s) exited with code %s."
#: pid -> (signal number, exit code) from the arbiter's records of its wait status.
_statuses: Dict[int, Tuple[Optional[int], Optional[int]]] = {}


class _WaitStatuses(logging.Filter):
    """Keeps the signal or exit code of each reaped worker from gunicorn's own records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message, args = record.msg, record.args
        if isinstance(message, str) and isinstance(args, tuple) and len(args) == 2 \
                and isinstance(args[0], int):
            if message.startswith(_SENT):
                number = getattr(signal.Signals, str(args[1]), None) \
                    if str(args[1]).startswith("SIG") else None
                _statuses[args[0]] = (int(number) if number else None, None)
            elif message == _EXITED and isinstance(args[1], int):
                _statuses[args[0]] = (None, args[1])
        return True


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook (in the arbiter): tell the worker's death when its
    record is still open."""
    with internal_errors:
        pid = int(worker.pid)
        number, exit_code = _statuses.pop(pid, (None, None))
        from ..deaths.telling import tell_child_death

        tell_child_death(pid, f"gunicorn arbiter pid {os.getpid()}", signal=number,
                         exit_code=exit_code)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``worker_exit`` hook (in the worker, as it leaves): close its record."""
    with internal_errors:
        recorder.close()


logging.getLogger("gunicorn.error").addFilter(_WaitStatuses())
os.environ[recorder.SUPERVISOR_ENV] = str(os.getpid())
