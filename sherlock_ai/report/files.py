"""Which log files of a folder the report reads, in which order, and how they are opened.

Rotated copies are read with the current file: ``monitoring.log.1`` (``RotatingFileHandler``),
``monitoring.log.1.gz`` and ``monitoring.log-20261201.gz`` (logrotate's ``compress`` and
``dateext``). Compressed files are read as they are, without unpacking them on disk.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import IO, Callable, Dict, Iterator, List, Optional, Tuple

from ..logs.lines import MONITORING_LOGGER, PERFORMANCE_LOGGER

_ROTATED = re.compile(
    r"^(?P<stem>[^.]+)\.(?P<ext>log|jsonl)(?:[.-](?P<n>\d+))?(?P<gz>\.gz)?$")
# Which files hold which logger's records; app.* holds every logger's.
SOURCES = {"monitoring": MONITORING_LOGGER, "performance": PERFORMANCE_LOGGER}
# The kinds of record each logger writes (text lines need not name their logger).
KINDS_OF_LOGGER = {MONITORING_LOGGER: frozenset({"memory", "resources", "leak_suspect"}),
                   PERFORMANCE_LOGGER: frozenset({"performance"})}
# Progress is reported every this many lines (reporting every line costs more than parsing).
_PROGRESS_EVERY = 2048


def _age(n: Optional[str]) -> float:
    """Sort key, oldest first: the current file last, ``.5`` before ``.1``, dates ascending."""
    if n is None:
        return float("inf")
    return float(n) if len(n) >= 8 else -float(n)


def log_files(logs_dir: Path) -> List[Path]:
    """The files to read, oldest rotation first, so that no record is read twice:
    ``monitoring.*`` and ``performance.*`` when present, ``app.*`` only for the loggers whose
    own files are missing (``errors.*`` holds nothing the others do not)."""
    found: Dict[str, List[Tuple[float, Path]]] = {}
    for path in logs_dir.iterdir():
        match = _ROTATED.match(path.name)
        if match and path.is_file():
            found.setdefault(match["stem"], []).append((_age(match["n"]), path))
    chosen = [stem for stem in SOURCES if stem in found]
    if len(chosen) < len(SOURCES) and "app" in found:
        chosen.append("app")
    files: List[Path] = []
    for stem in chosen:
        files += [path for _, path in sorted(found[stem], key=lambda item: (item[0], item[1]))]
    return files


def wanted_kinds(files: List[Path]) -> Dict[Path, Optional[frozenset]]:
    """For each file, the record kinds to keep from it (``None``: all of sherlock_ai's)."""
    own = {_ROTATED.match(p.name)["stem"] for p in files}  # type: ignore[index]
    missing = frozenset().union(*(KINDS_OF_LOGGER[logger] for stem, logger in SOURCES.items()
                                  if stem not in own))
    return {p: (missing if p.name.startswith("app.") else None) for p in files}


def is_json(path: Path) -> bool:
    """Whether ``path`` holds JSON lines (``.jsonl``, compressed or rotated too)."""
    return _ROTATED.match(path.name)["ext"] == "jsonl"  # type: ignore[index]


def read_lines(path: Path, progress: Optional[Callable[[int], None]] = None) -> Iterator[str]:
    """The lines of ``path`` (decoded, line ends removed), gzip-compressed or not;
    ``progress`` is told the bytes of the file on disk read so far, now and then."""
    with open(path, "rb") as raw:
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
        told = 0
        for count, line in enumerate(stream):
            if progress is not None and count % _PROGRESS_EVERY == 0:
                now = raw.tell()
                progress(now - told)
                told = now
            yield line.decode("utf-8", errors="replace").rstrip("\r\n")
        if progress is not None:
            progress(raw.tell() - told)
