"""How much memory this process may use: the container's cgroup limit when there is one, else
the machine's physical memory. Read once, when a guard with a share (``rss_limit="80%"``)
starts; nothing here runs per request.

- cgroup v2: ``memory.max`` of the process's cgroup (the ``0::/path`` line of
  ``/proc/self/cgroup``), or of the nearest parent that has a number rather than ``max``;
- cgroup v1: ``memory.limit_in_bytes`` of the memory controller's cgroup (a value near 2**63
  means "no limit");
- else ``os.sysconf`` page size times physical pages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
# cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit number.
_V1_UNLIMITED = 1 << 62


class MemoryLimit(NamedTuple):
    """The limit in bytes and where it was read (``"cgroup v2 memory.max"``, ...)."""

    bytes: int
    source: str


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_paths(proc_cgroup: str) -> Tuple[Optional[str], Optional[str]]:
    """(the v2 path, the v1 memory controller's path) from ``/proc/self/cgroup``."""
    text = _read(Path(proc_cgroup)) or ""
    v2 = v1 = None
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _candidates(root: Path, path: Optional[str], *subdirs: str) -> List[Path]:
    """The cgroup's own directory and its parents up to the mount, innermost first. In a
    container the mount is the container's own cgroup, so the path from /proc may not exist
    below it: the mount itself is tried last."""
    out: List[Path] = []
    for base in (root / d for d in subdirs) if subdirs else (root,):
        if path:
            parts = [p for p in path.split("/") if p]
            for i in range(len(parts), 0, -1):
                out.append(base.joinpath(*parts[:i]))
        out.append(base)
    return out


def cgroup_v2_limit(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> Optional[int]:
    """The nearest ``memory.max`` that is a number, or ``None`` (no v2, or ``max`` all the way)."""
    v2, _ = _cgroup_paths(proc_cgroup)
    for directory in _candidates(Path(root), v2):
        value = _read(directory / "memory.max")
        if value is not None and value != "max" and value.isdigit():
            return int(value)
    return None


def cgroup_v1_limit(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> Optional[int]:
    """The nearest ``memory.limit_in_bytes`` below "no limit", or ``None``."""
    _, v1 = _cgroup_paths(proc_cgroup)
    for directory in _candidates(Path(root), v1, "memory"):
        value = _read(directory / "memory.limit_in_bytes")
        if value is not None and value.isdigit() and int(value) < _V1_UNLIMITED:
            return int(value)
    return None


def physical_memory() -> Optional[int]:
    """The machine's physical memory in bytes, or ``None`` when the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        try:
            import psutil

            return int(psutil.virtual_memory().total)
        except Exception:  # noqa: BLE001 - no way to know
            return None


def memory_limit(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> Optional[MemoryLimit]:
    """What this process may use: the cgroup limit (v2, then v1) when it is below physical
    memory, else physical memory; ``None`` when nothing can be read."""
    physical = physical_memory()
    for reader, source in ((cgroup_v2_limit, "cgroup v2 memory.max"),
                           (cgroup_v1_limit, "cgroup v1 memory.limit_in_bytes")):
        limit = reader(root, proc_cgroup)
        if limit is not None and (physical is None or limit < physical):
            return MemoryLimit(limit, source)
    return None if physical is None else MemoryLimit(physical, "physical memory")
