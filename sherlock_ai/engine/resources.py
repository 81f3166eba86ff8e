"""Process snapshots: memory (RSS, peak, tracemalloc) and resources (CPU, threads, I/O, net)."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from ..formatting import format_bytes
from ..safety import internal_errors
from .rss import current_rss, peak_rss

if TYPE_CHECKING:
    import psutil

_process: Optional[psutil.Process] = None
_snapshot_lock = threading.Lock()
_last_rss: Optional[int] = None


def _psutil_process() -> psutil.Process:
    """A psutil.Process for this process, cached until a fork."""
    global _process
    if _process is None or _process.pid != os.getpid():
        import psutil

        _process = psutil.Process()
    return _process


def _cpu_seconds() -> float:
    """CPU time (user + system) used by all threads of this process so far."""
    return time.process_time()


def _thread_count() -> int:
    try:
        return int(_psutil_process().num_threads())
    except Exception:  # noqa: BLE001 - sandbox without /proc access
        return threading.active_count()


def _io_bytes() -> Optional[Tuple[int, int]]:
    """Bytes this process read and wrote at the storage layer, or None when unreadable."""
    with internal_errors:
        io = _psutil_process().io_counters()
        return int(io.read_bytes), int(io.write_bytes)
    return None


def _net_bytes() -> Optional[Tuple[int, int]]:
    """Bytes sent and received by the whole machine (all processes), or None."""
    with internal_errors:
        import psutil

        net = psutil.net_io_counters()
        return int(net.bytes_sent), int(net.bytes_recv)
    return None


@dataclass(frozen=True)
class MemorySnapshot:
    """Memory of this process at ``timestamp`` (seconds since the epoch), in bytes.

    ``size_diff`` is the RSS change since the previous ``capture_memory()`` in this process
    (0 for the first one); ``traced_memory`` is tracemalloc's ``(current, peak)``, ``(0, 0)``
    when tracemalloc is off. ``current_size``/``peak_size`` are ``None`` when unreadable.
    """

    timestamp: float
    current_size: Optional[int]
    peak_size: Optional[int]
    size_diff: int
    traced_memory: Tuple[int, int]


@dataclass(frozen=True)
class ResourceSnapshot:
    """CPU, memory, threads, I/O and network of this process at ``timestamp``.

    ``cpu_time`` is the process's user + system CPU seconds so far; ``io_*`` are storage-layer
    bytes of this process; ``net_*`` are machine-wide counters (all processes). Figures that
    cannot be read are ``None``.
    """

    timestamp: float
    cpu_time: float
    memory_rss: Optional[int]
    num_threads: int
    io_read_bytes: Optional[int]
    io_write_bytes: Optional[int]
    net_bytes_sent: Optional[int]
    net_bytes_recv: Optional[int]


class ResourceMonitor:
    """Low-level snapshots of this process."""

    format_bytes = staticmethod(format_bytes)

    @staticmethod
    def capture_memory() -> MemorySnapshot:
        """RSS now, peak RSS, RSS change since the previous call, and tracemalloc's figures."""
        global _last_rss
        rss = current_rss()
        with _snapshot_lock:
            previous, _last_rss = _last_rss, rss
        diff = 0 if previous is None or rss is None else rss - previous
        traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
        peak = peak_rss()
        # The kernel updates its high-water mark lazily: it can trail the current reading.
        if peak is not None and rss is not None:
            peak = max(peak, rss)
        return MemorySnapshot(time.time(), rss, peak, diff, traced)

    @staticmethod
    def capture_resources() -> ResourceSnapshot:
        """CPU time, RSS, thread count, storage I/O and machine-wide network counters now."""
        io = _io_bytes() or (None, None)
        net = _net_bytes() or (None, None)
        return ResourceSnapshot(
            time.time(), _cpu_seconds(), current_rss(), _thread_count(), *io, *net
        )


class ResourceWindow:
    """CPU, I/O and network counters over one block, for ``ResourceTracker``."""

    __slots__ = ("include_io", "include_network", "cpu0", "t0", "io0", "net0")

    def __init__(self, include_io: bool, include_network: bool) -> None:
        self.include_io = include_io
        self.include_network = include_network
        self.io0 = _io_bytes() if include_io else None
        self.net0 = _net_bytes() if include_network else None
        self.t0 = time.perf_counter()
        self.cpu0 = _cpu_seconds()

    def end(self) -> Dict[str, Any]:
        """CPU percent (process CPU time over wall time; can exceed 100 with threads), etc."""
        cpu = _cpu_seconds() - self.cpu0
        wall = time.perf_counter() - self.t0
        out: Dict[str, Any] = {
            "cpu_percent": 100.0 * cpu / wall if wall > 0 else 0.0,
            "cpu_time": cpu,
            "threads": _thread_count(),
        }
        if self.include_io:
            out["io_read"], out["io_write"] = _deltas(self.io0, _io_bytes())
        if self.include_network:
            out["net_sent"], out["net_recv"] = _deltas(self.net0, _net_bytes())
        return out


def _deltas(
    before: Optional[Tuple[int, int]], after: Optional[Tuple[int, int]]
) -> Tuple[Optional[int], Optional[int]]:
    if before is None or after is None:
        return None, None
    return after[0] - before[0], after[1] - before[1]
