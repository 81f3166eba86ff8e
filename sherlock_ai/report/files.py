"""Which log files of a folder the report reads, in which order, and how they are opened.

Rotated copies are read with the current file: ``monitoring.log.1`` (``RotatingFileHandler``),
``monitoring.log.1.gz`` and ``monitoring.log-20261201.gz`` (logrotate's ``compress`` and
``dateext``). Compressed files are read as they are, without unpacking them on disk. A
rotation present both plain and compressed is read once (the plain file); a link to a file
outside the folder is not followed. Both are named in the report.

Lines are read with a cap of :data:`LINE_LIMIT` bytes: a longer line (a run of NULs after a
crash, a compressed file that inflates to a gigabyte without a newline) is passed over as
:data:`TOO_LONG`, in memory bounded by the cap.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import IO, Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

from ..logs.lines import MONITORING_LOGGER, PERFORMANCE_LOGGER
from .checks import printable

_ROTATED = re.compile(
    r"^(?P<stem>[^.]+)\.(?P<ext>log|jsonl)(?:[.-](?P<n>\d+))?(?P<gz>\.gz)?$")
# Which files hold which logger's records; app.* holds every logger's.
SOURCES = {"monitoring": MONITORING_LOGGER, "performance": PERFORMANCE_LOGGER}
# The kinds of record each logger writes (text lines need not name their logger).
KINDS_OF_LOGGER = {MONITORING_LOGGER: frozenset({"memory", "resources", "leak_suspect",
                                                  "memory_budget", "rss_limit"}),
                   PERFORMANCE_LOGGER: frozenset({"performance"})}
# Progress is reported every this many lines (reporting every line costs more than parsing).
_PROGRESS_EVERY = 2048
#: The longest line read, in bytes (ours are at most a few KB).
LINE_LIMIT = 64 * 1024
#: What :func:`read_lines` gives for a line longer than :data:`LINE_LIMIT` (compare with ``is``).
TOO_LONG = "\x00 a line over the limit"


def _age(n: Optional[str]) -> float:
    """Sort key, oldest first: the current file last, ``.5`` before ``.1``, dates ascending."""
    if n is None:
        return float("inf")
    return float(n) if len(n) >= 8 else -float(n)


def log_files(logs_dir: Path, left_out: Optional[List[str]] = None) -> List[Path]:
    """The files to read, oldest rotation first, so that no record is read twice:
    ``monitoring.*`` and ``performance.*`` when present, ``app.*`` only for the loggers whose
    own files are missing (``errors.*`` holds nothing the others do not). Files passed over
    that a reader would expect to be read are named in ``left_out``, with the reason."""
    skipped: List[str] = [] if left_out is None else left_out
    inside = logs_dir.resolve()
    found: Dict[str, List[Tuple[float, Path]]] = {}
    rotations: Dict[Tuple[str, str, Optional[str]], Path] = {}
    for path in sorted(logs_dir.iterdir()):
        match = _ROTATED.match(path.name)
        if not match or not path.is_file():
            continue
        if path.is_symlink() and inside not in path.resolve().parents:
            skipped.append(f"{printable(path.name)}: a link to a file outside the folder")
            continue
        key = (match["stem"], match["ext"], match["n"])
        twin = rotations.get(key)
        if twin is not None:
            # The plain file is read: its compressed copy may still be being written.
            plain, packed = (twin, path) if path.name.endswith(".gz") else (path, twin)
            skipped.append(f"{printable(packed.name)}: the same rotation as "
                           f"{printable(plain.name)}")
            found[match["stem"]] = [item for item in found[match["stem"]] if item[1] != twin]
            path = plain
        rotations[key] = path
        found.setdefault(match["stem"], []).append((_age(match["n"]), path))
    chosen = [stem for stem in SOURCES if stem in found]
    if len(chosen) < len(SOURCES) and "app" in found:
        chosen.append("app")
    files: List[Path] = []
    for stem in chosen:
        files += [path for _, path in sorted(found[stem], key=lambda item: (item[0], item[1]))]
    return files


def wanted_kinds(files: List[Path]) -> Dict[Path, Optional[FrozenSet[str]]]:
    """For each file, the record kinds to keep from it (``None``: all of sherlock_ai's)."""
    own = {_ROTATED.match(p.name)["stem"] for p in files}  # type: ignore[index]
    missing = frozenset().union(*(KINDS_OF_LOGGER[logger] for stem, logger in SOURCES.items()
                                  if stem not in own))
    return {p: (missing if p.name.startswith("app.") else None) for p in files}


def is_json(path: Path) -> bool:
    """Whether ``path`` holds JSON lines (``.jsonl``, compressed or rotated too)."""
    return _ROTATED.match(path.name)["ext"] == "jsonl"  # type: ignore[index]


def read_lines(path: Path, progress: Optional[Callable[[int], None]] = None) -> Iterator[str]:
    """The lines of ``path`` (decoded, line ends removed; :data:`TOO_LONG` for a line over
    :data:`LINE_LIMIT` bytes), gzip-compressed or not; ``progress`` is told the bytes of the
    file on disk read so far, now and then."""
    with open(path, "rb") as raw:
        readline = gzip.GzipFile(fileobj=raw).readline if path.name.endswith(".gz") \
            else raw.readline
        yield from _lines(readline, raw.tell, progress)


def read_stream(stream: IO[bytes], progress: Optional[Callable[[int], None]] = None
                ) -> Iterator[str]:
    """The lines of a byte stream (standard input), as :func:`read_lines` gives them."""
    counted = _Counted(stream)
    return _lines(counted.readline, lambda: counted.read, progress)


class _Counted:
    """A stream's ``readline`` that counts the bytes it gave."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.read = stream, 0

    def readline(self, size: int) -> bytes:
        line = self.stream.readline(size)
        self.read += len(line)
        return line


def _lines(readline: Callable[[int], bytes], tell: Callable[[], int],
           progress: Optional[Callable[[int], None]]) -> Iterator[str]:
    told = count = 0
    limit = LINE_LIMIT + 1
    while True:
        raw = readline(limit)
        if not raw:
            break
        if len(raw) == limit and raw[-1:] != b"\n":
            # Over the cap: the rest of the line is read and dropped, a cap at a time.
            while True:
                rest = readline(LINE_LIMIT)
                if not rest or rest[-1:] == b"\n":
                    break
            line = TOO_LONG
        else:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if progress is not None and count % _PROGRESS_EVERY == 0:
            now = tell()
            progress(now - told)
            told = now
        count += 1
        yield line
    if progress is not None:
        progress(tell() - told)
