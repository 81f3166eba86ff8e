"""Processes the tests start, and proof that none outlives its test.

Servers run in a session (and process group) of their own and are stopped as a group: a
gunicorn master killed alone leaves its workers running with PPID 1. Every process started
from the test run inherits :data:`MARKER` in its environment, so one that escaped is found
even after its parent is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List

MARKER = "SHERLOCK_AI_TEST_RUN"
PROC = Path("/proc")


def mark_children() -> str:
    """Set the marker every child of this test run inherits; returns its value."""
    value = os.environ.setdefault(MARKER, f"{os.getpid()}")
    return value


def _stat(pid: int) -> List[str]:
    """State, PPID, process group, ... of ``pid`` (fields 3 onwards of /proc/PID/stat)."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2:].split()


def group_members(pgid: int) -> List[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    if not PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(int(entry.name))
            except (OSError, ValueError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def escaped_processes(value: str) -> List[int]:
    """Live processes other than this one whose environment carries the marker ``value``."""
    wanted = f"{MARKER}={value}".encode()
    found = []
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0") \
                    and _stat(int(entry.name))[0] != "Z":
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue  # gone meanwhile, or another user's
    return found


def _wait_group(pgid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return True
        time.sleep(0.05)
    return not group_members(pgid)


def stop_group(proc: subprocess.Popen, first_signal: int = signal.SIGINT,
               grace: float = 20.0, leader_only: bool = False) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``) and every process of its group:
    ``first_signal`` to the group (``leader_only``: to ``proc`` alone, a supervisor that stops
    its own children), SIGKILL to what is left after ``grace`` seconds, and wait until the
    leader is reaped and no member is alive."""
    pgid = proc.pid
    deadline = time.monotonic() + grace
    try:
        if leader_only:
            os.kill(pgid, first_signal)
        else:
            os.killpg(pgid, first_signal)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        pass
    if proc.poll() is None or not _wait_group(pgid, deadline):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if not _wait_group(pgid, time.monotonic() + 10):
            raise RuntimeError(f"processes {group_members(pgid)} of group {pgid} survived SIGKILL")


def kill(pids: List[int], timeout: float = 10.0) -> None:
    """SIGKILL each of ``pids`` (those already gone are ignored) and wait until none is alive:
    the signal is delivered asynchronously, so a check right after ``kill`` can still see it."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except (OSError, ValueError):
        return False  # gone (or no /proc: nothing more to wait for)
