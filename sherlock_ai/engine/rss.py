"""Cheap reads of this process's resident set size (RSS).

On Linux the current RSS comes from an already-open ``/proc/self/statm`` read with
``os.pread`` (about a microsecond); elsewhere from a cached ``psutil.Process``. The file
is reopened in a forked child, whose ``/proc/self`` is a different process.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

from ..safety import internal_errors, report_internal_error

_pread = os.pread
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_fd: Optional[int] = None
_fd_pid = -1
_fd_lock = threading.Lock()
_process = None
_psutil_failed = False


def _open_statm() -> Optional[int]:
    global _fd, _fd_pid
    with _fd_lock:
        if _fd is not None and _fd_pid == os.getpid():
            return _fd
        try:
            _fd = os.open("/proc/self/statm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            _fd_pid = os.getpid()
        except OSError:
            _fd = None
        return _fd


def _after_fork() -> None:
    global _fd, _process, _psutil_failed
    _process = None
    _psutil_failed = False
    if _fd is not None:
        try:
            os.close(_fd)
        except OSError:
            pass
        _fd = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _psutil_rss() -> Optional[int]:
    global _process, _psutil_failed
    if _psutil_failed:
        return None
    try:
        if _process is None:
            import psutil

            _process = psutil.Process()
        return int(_process.memory_info().rss)
    except Exception as exc:  # noqa: BLE001 - psutil may be denied /proc; degrade
        # Not retried on every call: without /proc each attempt costs a failed lookup.
        _psutil_failed = True
        report_internal_error("rss.psutil", exc)
        return None


def current_rss() -> Optional[int]:
    """This process's RSS in bytes now, or ``None`` when it cannot be read."""
    fd = _fd
    if fd is None:
        fd = _open_statm()
    if fd is not None:
        try:
            # "size resident shared ...": the second field. Four small objects, parsed in C:
            # this runs twice per request, and tracemalloc, when on, taxes every allocation.
            return int(_pread(fd, 64, 0).split(None, 2)[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            pass
    return _psutil_rss()


def peak_rss() -> Optional[int]:
    """The highest RSS this process has reached, in bytes, or ``None`` when unknown."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) if sys.platform == "darwin" else int(peak) * 1024
    except Exception:  # noqa: BLE001 - no resource module (Windows): ask psutil
        with internal_errors:
            import psutil

            info = psutil.Process().memory_info()
            return int(getattr(info, "peak_wset", info.rss))
        return None
