"""Where the Python heap grew: tracemalloc snapshots grouped by the line that allocated.

A snapshot lists every live traced block with its traceback. Here blocks are grouped by their
*site*: the most recent frame of the traceback outside the import machinery. Blocks whose site
would be a line of sherlock_ai or tracemalloc are monitoring's own memory and are left out.
Two groupings taken at the start and the end of a block give the sites whose retained size
grew most (``MemoryTracker(top_allocations=N)``); the leak watch groups the same way, per route.

Cost: ``tracemalloc.take_snapshot()`` copies every live trace and the grouping walks them in
Python, so both grow with the number of live traced blocks (not with the block's own work).
How many frames a traceback holds is fixed when tracemalloc starts: 1 unless you started it
yourself or called :func:`sherlock_ai.engine.tracing.set_traceback_frames`.
"""

from __future__ import annotations

import heapq
import importlib
import os
import sys
import tracemalloc
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Tuple

from ..bounded import BoundedCache
from ..formatting import log_safe

#: ``(filename, line number)`` of an allocating line.
Site = Tuple[str, int]
#: Retained ``[size in bytes, block count]`` per key.
Sizes = Dict[Hashable, List[int]]

# The whole package, not only this folder: frames of any sherlock_ai module are our own.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TRACEMALLOC_FILE = os.path.abspath(tracemalloc.__file__)
_IMPORT_FILES = frozenset(
    os.path.join(os.path.dirname(os.path.abspath(importlib.__file__)), name)
    for name in ("__init__.py", "_bootstrap.py", "_bootstrap_external.py")
)
_FROZEN_IMPORT = ("<frozen importlib.", "<frozen zipimport>")

USER, IMPORT_MACHINERY, MONITORING = 0, 1, 2
# Filenames seen in tracebacks are few (one per module); the verdict is cached per name.
_kinds: BoundedCache[str, int] = BoundedCache()


def file_kind(filename: str) -> int:
    """:data:`MONITORING` for sherlock_ai's and tracemalloc's files, :data:`IMPORT_MACHINERY`
    for importlib's, :data:`USER` for everything else."""
    kind = _kinds.get(filename)
    if kind is None:
        path = filename if filename.startswith("<") else os.path.abspath(filename)
        if path.startswith(_PACKAGE_DIR) or path == _TRACEMALLOC_FILE:
            kind = MONITORING
        elif path.startswith(_FROZEN_IMPORT) or path in _IMPORT_FILES:
            kind = IMPORT_MACHINERY
        else:
            kind = USER
        _kinds.keep(filename, kind)
    return kind


_names: BoundedCache[str, str] = BoundedCache()


def site_path(filename: str) -> str:
    """How a site's file is named in lines, records, metrics and reports: relative to the
    longest ``sys.path`` entry that holds it (``shop/cart/__init__.py``), else to the current
    directory (the project) when it is under it, else as given. Base names alone are
    ambiguous in any package; absolute paths are long and differ per machine."""
    name = _names.get(filename)
    if name is not None:
        return name
    name = filename
    if not filename.startswith("<"):
        path = os.path.abspath(filename)
        roots = [os.path.abspath(entry or os.curdir) for entry in sys.path
                 if isinstance(entry, str)] + [os.path.abspath(os.curdir)]
        best = ""
        for root in roots:
            prefix = root.rstrip(os.sep) + os.sep
            if path.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        if best:
            name = path[len(best):].replace(os.sep, "/")
    return _names.keep(filename, name)


def allocation_site(traceback: tracemalloc.Traceback) -> Optional[Site]:
    """The line that allocated: the most recent frame of ``traceback`` outside the import
    machinery. ``None`` when that frame is sherlock_ai's or tracemalloc's (monitoring's own
    memory) or when every frame is the import machinery's."""
    # tracemalloc tracebacks are ordered oldest frame first.
    for frame in reversed(traceback):
        kind = file_kind(frame.filename)
        if kind == USER:
            return frame.filename, frame.lineno
        if kind == MONITORING:
            return None
    return None


def group_sizes(
    snapshot: tracemalloc.Snapshot,
    key_of: Callable[[tracemalloc.Traceback], Optional[Hashable]] = allocation_site,
) -> Sizes:
    """Retained size and block count of ``snapshot`` per ``key_of(traceback)`` (blocks whose
    key is ``None`` are left out)."""
    out: Sizes = {}
    for _ in group_in_steps(snapshot, key_of, out, chunk=sys.maxsize):
        pass
    return out


def group_in_steps(snapshot: tracemalloc.Snapshot,
                   key_of: Callable[[tracemalloc.Traceback], Optional[Hashable]],
                   into: Sizes, chunk: int) -> Iterator[int]:
    """:func:`group_sizes` into ``into``, at most ``chunk`` traces per step; yields the traces
    of each step (a caller that must not pause long runs the steps apart)."""
    raw = getattr(snapshot.traces, "_traces", None)
    if not isinstance(raw, list):  # not CPython's layout: through the public API, at once
        for stat in snapshot.statistics("traceback"):
            _add(into, key_of(stat.traceback), stat.size, stat.count)
        yield len(snapshot.traces)
        return
    keys: Dict[Any, Optional[Hashable]] = {}
    for start in range(0, len(raw), chunk):
        for trace in raw[start:start + chunk]:
            # A raw trace: (domain, size, frames, total frames); frames repeat a lot.
            frames = trace[2]
            try:
                key = keys[frames]
            except KeyError:
                key = keys[frames] = key_of(tracemalloc.Traceback(frames))
            _add(into, key, trace[1], 1)
        yield min(chunk, len(raw) - start)


def _add(sizes: Sizes, key: Optional[Hashable], size: int, count: int) -> None:
    if key is None:
        return
    entry = sizes.get(key)
    if entry is None:
        sizes[key] = [size, count]
    else:
        entry[0] += size
        entry[1] += count


def site_sizes() -> Sizes:
    """Retained size and block count per allocation site now (tracemalloc must be tracing)."""
    return group_sizes(tracemalloc.take_snapshot())


def top_growth(before: Sizes, after: Sizes, limit: int) -> List[Dict[str, Any]]:
    """The ``limit`` sites whose retained size grew most from ``before`` to ``after``, largest
    first, as ``{"file", "line", "size", "count"}`` (growth in bytes and in blocks; the file
    name made log-safe). Sites that did not grow are left out."""
    grown: List[Tuple[int, int, Any]] = []
    for site, (size, count) in after.items():
        old = before.get(site)
        growth = size - old[0] if old is not None else size
        if growth > 0:
            grown.append((growth, count - old[1] if old is not None else count, site))
    return [
        {"file": log_safe(site[0]), "line": site[1], "size": growth, "count": count}
        for growth, count, site in heapq.nlargest(limit, grown, key=lambda g: g[0])
    ]


def check_top_allocations(top_allocations: object, trace_malloc: bool) -> int:
    """A number of sites to report (0 for none); more than 0 needs ``trace_malloc=True``."""
    if isinstance(top_allocations, bool) or not isinstance(top_allocations, int):
        raise TypeError(
            f"top_allocations must be an int number of sites (0 for none), got {top_allocations!r}"
        )
    if top_allocations < 0:
        raise ValueError(f"top_allocations must be >= 0, got {top_allocations}")
    if top_allocations and not trace_malloc:
        raise ValueError(
            "top_allocations needs tracemalloc: use trace_malloc=True or top_allocations=0"
        )
    return top_allocations
