"""This process's memory cgroup: the file counting the kernel's OOM kills in it and its limit.

cgroup v2: ``memory.events`` (``oom_kill N``) and ``memory.max``; v1: ``memory.oom_control``
(``oom_kill N``) and ``memory.limit_in_bytes``. The cgroup comes from ``/proc/self/cgroup``,
where its hierarchy is mounted from ``/proc/self/mountinfo``. Read once when a record is
made, then once a second by the watcher (the count), never on a request.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

# A v1 limit this high means "no limit" (the page-rounded LONG_MAX).
_NO_LIMIT = 1 << 62


def _mounts() -> Dict[str, Tuple[str, str]]:
    """``{"v2": (root, mount point), "v1": (root, mount point)}`` of the memory hierarchies."""
    found: Dict[str, Tuple[str, str]] = {}
    with open("/proc/self/mountinfo") as file:
        for line in file:
            left, _, right = line.partition(" - ")
            fields, kind = left.split(), right.split()
            if len(fields) < 5 or len(kind) < 3:
                continue
            if kind[0] == "cgroup2":
                found.setdefault("v2", (fields[3], fields[4]))
            elif kind[0] == "cgroup" and "memory" in kind[2].split(","):
                found.setdefault("v1", (fields[3], fields[4]))
    return found


def _under(mount: Tuple[str, str], path: str) -> str:
    root, point = mount
    if root != "/" and path.startswith(root):
        path = path[len(root):]
    return os.path.join(point, path.lstrip("/"))


def memory_cgroup() -> Tuple[str, Optional[int]]:
    """The file counting this process's cgroup's OOM kills (``""`` when none is readable) and
    the cgroup's memory limit in bytes (``None`` when unlimited or unknown)."""
    try:
        mounts = _mounts()
        with open("/proc/self/cgroup") as file:
            lines = file.read().splitlines()
    except OSError:
        return "", None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and "v2" in mounts:
            folder = _under(mounts["v2"], path)
            events = os.path.join(folder, "memory.events")
            if os.path.exists(events):
                return events, _limit(os.path.join(folder, "memory.max"))
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and "v1" in mounts:
            folder = _under(mounts["v1"], path)
            control = os.path.join(folder, "memory.oom_control")
            if os.path.exists(control):
                return control, _limit(os.path.join(folder, "memory.limit_in_bytes"))
    return "", None


def _limit(path: str) -> Optional[int]:
    try:
        with open(path) as file:
            text = file.read().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None  # "max"
    value = int(text)
    return value if value < _NO_LIMIT else None


def oom_kills(counter_file: str) -> Optional[int]:
    """The ``oom_kill`` count of ``counter_file`` (from :func:`memory_cgroup`), or ``None``."""
    if not counter_file:
        return None
    try:
        with open(counter_file) as file:
            for line in file:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None
