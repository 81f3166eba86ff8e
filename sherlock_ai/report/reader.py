"""Reading the logs sherlock_ai writes: which files, in which order, and what each line holds.

Text lines are read in the default format (``%(asctime)s - %(request_id)s - %(name)s -
%(levelname)s - %(message)s``); JSON lines in the format of :class:`sherlock_ai.JsonFormatter`.
Records of other loggers, tracebacks and continuation lines are not sherlock_ai's and are
passed over; a line that should be sherlock_ai's but cannot be read is counted as bad.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..lines import MONITORING_LOGGER, PERFORMANCE_LOGGER

_SIZE = re.compile(r"^([+-]?)(\d+(?:\.\d+)?)(B|KB|MB|GB|TB|PB)$")
_UNIT = {"B": 0, "KB": 10, "MB": 20, "GB": 30, "TB": 40, "PB": 50}
_TEXT_RECORD = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[,.]\d+)?) - (?P<rid>\S+) - (?P<logger>\S+)"
    r" - (?P<level>[A-Z]+) - (?P<msg>.*)$"
)
_FIGURES = r"(?P<name>.*?) \| (?P<status>SUCCESS|ERROR) \| (?P<duration>\d+(?:\.\d+)?)s"
_MESSAGES = {
    "memory": re.compile(
        r"^MEMORY \| " + _FIGURES + r" \| Current: (?P<rss>\S+) \| Change: (?P<rss_change>\S+)"
        r"(?: \| Traced: (?P<traced>\S+) \(Peak: (?P<traced_peak>\S+)\))?"
    ),
    "performance": re.compile(r"^PERFORMANCE \| " + _FIGURES),
    "resources": re.compile(
        r"^RESOURCES \| " + _FIGURES + r" \| CPU: [^|]*\| Memory: (?P<rss>\S+)"
        r" \((?P<rss_change>\S+)\)"
    ),
    "leak_suspect": re.compile(
        r"^LEAK SUSPECT \| (?P<name>.*?) \| \+(?P<per_request>\S+)/request \| (?P<evidence>.*)$"
    ),
}
_PREFIXES = {"MEMORY |": "memory", "PERFORMANCE |": "performance", "RESOURCES |": "resources",
             "LEAK SUSPECT |": "leak_suspect"}
_SITE = re.compile(r"(?P<file>[^\s,]+):(?P<line>\d+) \+(?P<size>\S+)")
_ROTATED = re.compile(r"^(?P<stem>[^.]+)\.(?P<ext>log|jsonl)(?:\.(?P<n>\d+))?$")
# Which files hold which logger's records; app.* holds every logger's.
_SOURCES = {"monitoring": MONITORING_LOGGER, "performance": PERFORMANCE_LOGGER}


@dataclass
class Record:
    """One sherlock_ai line: its kind (memory, performance, resources, leak_suspect), name,
    time (seconds since the epoch) and figures (bytes, seconds; ``None`` when not shown)."""

    kind: str
    name: str
    timestamp: float
    request_id: str = "-"
    status: str = "SUCCESS"
    duration: Optional[float] = None
    rss: Optional[float] = None
    rss_change: Optional[float] = None
    traced_peak: Optional[float] = None
    per_request: Optional[float] = None
    sites: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class ReadStats:
    """What reading found: files, their bytes, sherlock_ai records and lines skipped."""

    files: List[Path] = field(default_factory=list)
    bytes: int = 0
    records: int = 0
    bad_lines: int = 0
    bad_examples: List[str] = field(default_factory=list)


def parse_size(text: str) -> Optional[float]:
    """``"512.00MB"`` -> bytes; ``"n/a"`` -> ``None``; anything else raises ``ValueError``."""
    if text == "n/a":
        return None
    found = _SIZE.match(text)
    if found is None:
        raise ValueError(f"not a size: {text!r}")
    sign, number, unit = found.groups()
    value = float(number) * (1 << _UNIT[unit])
    return -value if sign == "-" else value


def log_files(logs_dir: Path) -> List[Path]:
    """The files to read, oldest rotation first, so that no record is read twice:
    ``monitoring.*`` and ``performance.*`` when present, ``app.*`` only for the loggers whose
    own files are missing (``errors.*`` holds nothing the others do not)."""
    found: Dict[str, List[Tuple[int, Path]]] = {}
    for path in logs_dir.iterdir():
        match = _ROTATED.match(path.name)
        if match and path.is_file():
            found.setdefault(match["stem"], []).append((int(match["n"] or 0), path))
    chosen = [stem for stem in _SOURCES if stem in found]
    if len(chosen) < len(_SOURCES) and "app" in found:
        chosen.append("app")
    files: List[Path] = []
    for stem in chosen:
        files += [path for _, path in sorted(found[stem], key=lambda item: -item[0])]
    return files


def wanted_loggers(files: List[Path]) -> Dict[Path, Optional[frozenset]]:
    """For each file, the loggers whose records to keep (``None``: all of sherlock_ai's)."""
    own = {_ROTATED.match(p.name)["stem"] for p in files}  # type: ignore[index]
    missing = frozenset(logger for stem, logger in _SOURCES.items() if stem not in own)
    return {p: (missing if p.name.startswith("app.") else None) for p in files}


def read_logs(logs_dir: Path, stats: ReadStats,
              progress: Optional[Callable[[int], None]] = None) -> Iterator[Record]:
    """Every sherlock_ai record in ``logs_dir``; ``progress`` is told the bytes read."""
    files = log_files(logs_dir)
    keep = wanted_loggers(files)
    stats.files = files
    for path in files:
        parse = _parse_json if ".jsonl" in path.name else _parse_text
        with open(path, "rb") as stream:
            for raw in stream:
                stats.bytes += len(raw)
                if progress is not None:
                    progress(len(raw))
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if not line.strip():
                    continue
                try:
                    record = parse(line, keep[path])
                except (ValueError, KeyError, TypeError, AttributeError):
                    stats.bad_lines += 1
                    if len(stats.bad_examples) < 3:
                        stats.bad_examples.append(f"{path.name}: {line[:120]}")
                    continue
                if record is not None:
                    stats.records += 1
                    yield record


def _parse_text(line: str, loggers: Optional[frozenset]) -> Optional[Record]:
    head = _TEXT_RECORD.match(line)
    if head is None or (loggers is not None and head["logger"] not in loggers):
        return None
    message = head["msg"]
    kind = next((k for prefix, k in _PREFIXES.items() if message.startswith(prefix)), None)
    if kind is None:
        return None
    found = _MESSAGES[kind].match(message)
    if found is None:
        raise ValueError("a sherlock_ai line that does not parse")
    parts = found.groupdict()
    stamp = head["ts"].replace(",", ".")
    record = Record(kind, parts["name"], _local_time(stamp), request_id=head["rid"])
    if kind == "leak_suspect":
        record.per_request = parse_size(parts["per_request"])
        record.sites = [{"file": s["file"], "line": int(s["line"]), "size": parse_size(s["size"])}
                        for s in _SITE.finditer(parts["evidence"])]
        return record
    record.status = parts["status"]
    record.duration = float(parts["duration"])
    for key in ("rss", "rss_change", "traced_peak"):
        if parts.get(key) is not None:
            setattr(record, key, parse_size(parts[key]))
    return record


def _local_time(stamp: str) -> float:
    # logging writes local time without a zone, as the machine that wrote it saw it.
    whole, _, fraction = stamp.partition(".")
    seconds = time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S"))
    return seconds + (float("0." + fraction) if fraction else 0.0)


def _parse_json(line: str, loggers: Optional[frozenset]) -> Optional[Record]:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a JSON line that is not an object")
    kind = data.get("kind")
    if kind not in _MESSAGES or (loggers is not None and data.get("logger") not in loggers):
        return None
    record = Record(kind, str(data["name"]), _iso_time(data["timestamp"]),
                    request_id=str(data.get("request_id", "-")))
    if kind == "leak_suspect":
        record.per_request = float(data["per_request"])
        record.sites = [dict(site) for site in data.get("sites", []) if isinstance(site, dict)]
        return record
    record.status = str(data["status"])
    record.duration = float(data["duration"])
    for key in ("rss", "rss_change", "traced_peak"):
        value = data.get(key)
        if value is not None:
            setattr(record, key, float(value))
    return record


def _iso_time(stamp: Any) -> float:
    return datetime.fromisoformat(str(stamp)).timestamp()
