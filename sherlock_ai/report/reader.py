"""Reading the records sherlock_ai wrote, one at a time, from text and JSON lines.

Text lines: our message (``MEMORY | ...``) is found wherever the log format puts it and read
through :mod:`sherlock_ai.logs.schema`; what comes before it is read for the time, the pid and
the request id: the default format (no pid) and the same with ``%(process)d`` after the time
field by field, a format given with ``log_format`` exactly, any other by finding a time stamp in it.
JSON lines: by their fields (:class:`sherlock_ai.JsonFormatter`), or by their ``message`` when
another JSON formatter wrote them. Records of other loggers, tracebacks and continuation lines
are passed over; a line that should be ours but cannot be read is counted as bad.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from ..logs.schema import KIND_OF_TAG, locate, parse_message, parse_size
from .fastpath import DEFAULT_PREFIX, SKIP, FastLines, Row
from .files import is_json, log_files, read_lines, wanted_kinds

__all__ = ["LogRecords", "ReadStats", "Record", "log_files", "parse_size", "read_logs"]

_KINDS = frozenset(KIND_OF_TAG.values())
# The fields of the memory guard's records (the line schema's and the JSON lines' names).
EVENT_FIELDS = {"memory_budget": ("route", "measured_bytes", "budget_bytes", "measure"),
                "rss_limit": ("state", "rss_bytes", "limit_bytes", "action")}
_STAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?")
_FIELD = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]")
_CAPTURE = {"asctime": r"(?P<asctime>.+?)", "process": r"(?P<process>\d+)",
            "request_id": r"(?P<request_id>\S*?)"}


class Record:
    """One of our records: its kind (memory, performance, resources, leak_suspect, and the
    memory guard's memory_budget and rss_limit, whose figures are in ``event``), name,
    time (seconds since the epoch, ``None`` when the line shows none), pid (``None`` in logs
    written before lines carried one) and figures (bytes, seconds; ``None`` when not shown)."""

    __slots__ = ("kind", "name", "timestamp", "pid", "request_id", "status", "duration", "rss",
                 "rss_change", "traced_peak", "per_request", "requests", "sites", "event")

    def __init__(self, kind: str, name: str, timestamp: Optional[float],
                 pid: Optional[int] = None, request_id: str = "-") -> None:
        self.kind, self.name, self.timestamp, self.pid = kind, name, timestamp, pid
        self.request_id = request_id
        self.status = "SUCCESS"
        self.duration: Optional[float] = None
        self.rss: Optional[float] = None
        self.rss_change: Optional[float] = None
        self.traced_peak: Optional[float] = None
        self.per_request: Optional[float] = None
        self.requests: Optional[int] = None
        self.sites: List[Dict[str, Any]] = []
        # The memory guard's figures (memory_budget and rss_limit records).
        self.event: Dict[str, Any] = {}

    @classmethod
    def from_row(cls, row: Row) -> Record:
        """The record a row of :mod:`sherlock_ai.report.fastpath` stands for."""
        record = cls(row[0], row[1], row[2], row[3], row[4])
        (record.status, record.duration, record.rss, record.rss_change,
         record.traced_peak) = row[5:]
        return record

    def row(self) -> Row:
        """This measurement record as a row (the report folds rows)."""
        return (self.kind, self.name, self.timestamp, self.pid, self.request_id, self.status,
                self.duration or 0.0, self.rss, self.rss_change, self.traced_peak)

    def fill(self, fields: Dict[str, Any]) -> Record:
        """Take the figures of ``fields`` (a parsed message or a JSON object)."""
        get = fields.get
        if self.kind in EVENT_FIELDS:
            self.event = {key: get(key) for key in EVENT_FIELDS[self.kind]}
            return self
        if self.kind == "leak_suspect":
            self.per_request = float(fields["per_request"])
            self.requests = get("requests")
            self.sites = [dict(s) for s in get("sites") or () if isinstance(s, dict)]
            # Older suspects carry no kind: they are all leaks tracemalloc saw.
            self.event = {"kind_of_leak": get("kind_of_leak") or "python"}
            return self
        self.status = str(fields["status"])
        self.duration = float(fields["duration"])
        for key in ("rss", "rss_change", "traced_peak"):
            value = get(key)
            if value is not None:
                setattr(self, key, float(value))
        return self


@dataclass
class ReadStats:
    """What reading found: files, their bytes on disk, our records, lines skipped, files that
    could not be read, and records without a time stamp."""

    files: List[Path] = field(default_factory=list)
    bytes: int = 0
    records: int = 0
    bad_lines: int = 0
    bad_examples: List[str] = field(default_factory=list)
    bad_files: List[str] = field(default_factory=list)
    untimed: int = 0

    def bad(self, path: Path, line: str) -> None:
        self.bad_lines += 1
        if len(self.bad_examples) < 3:
            self.bad_examples.append(f"{path.name}: {line[:120]}")


def read_logs(logs_dir: Path, stats: ReadStats,
              progress: Optional[Callable[[int], None]] = None,
              log_format: Optional[str] = None) -> LogRecords:
    """Every record of ours in ``logs_dir``, streamed; ``progress`` is told the bytes read.
    ``log_format``: the ``logging`` format the text lines were written with, when it is not
    a default one (its ``%(asctime)s``, ``%(process)d`` and ``%(request_id)s`` are read)."""
    return LogRecords(logs_dir, stats, progress, log_format)


class LogRecords:
    """The records of a folder, read as they are iterated (:class:`Record` objects), or as
    :meth:`rows` or :meth:`batches` (what :func:`sherlock_ai.report.build_report` reads): the
    same records, the common measurements as row tuples, which cost less to make."""

    def __init__(self, logs_dir: Path, stats: ReadStats,
                 progress: Optional[Callable[[int], None]], log_format: Optional[str]) -> None:
        self.logs_dir, self.stats, self.progress = logs_dir, stats, progress
        self.log_format = log_format

    def __iter__(self) -> Iterator[Record]:
        for batch in self.batches():
            for item in batch:
                yield item if isinstance(item, Record) else Record.from_row(item)

    def rows(self) -> Iterator[Union[Row, Record]]:
        """Each record as a row (MEMORY and PERFORMANCE measurements) or a :class:`Record`."""
        for batch in self.batches():
            yield from batch

    def batches(self, size: int = 8192) -> Iterator[List[Union[Row, Record]]]:
        """:meth:`rows` in lists of up to ``size`` (a list per file at least)."""
        stats, progress = self.stats, self.progress
        files = log_files(self.logs_dir)
        keep = wanted_kinds(files)
        stats.files = files
        text = TextLines(self.log_format)

        def told(n: int) -> None:
            stats.bytes += n
            if progress is not None:
                progress(n)

        for path in files:
            fast, slow = (text.fast.json, _parse_json) if is_json(path) else \
                (text.fast.text, text.parse)
            kinds = keep[path]
            batch: List[Union[Row, Record]] = []
            add = batch.append
            try:
                for line in read_lines(path, told):
                    try:
                        record = fast(line, kinds)
                        if record is None:
                            record = slow(line, kinds)
                            if record is None:
                                continue
                        elif record is SKIP:
                            continue
                    except (ValueError, KeyError, TypeError, AttributeError):
                        stats.bad(path, line)
                        continue
                    if (record[2] if type(record) is tuple else record.timestamp) is None:
                        stats.untimed += 1
                    add(record)
                    if len(batch) >= size:
                        stats.records += len(batch)
                        yield batch
                        batch = []
                        add = batch.append
            except (OSError, EOFError) as exc:
                # A truncated or corrupt .gz: what was read counts, the rest is reported.
                stats.bad_files.append(f"{path.name}: {exc}")
            stats.records += len(batch)
            yield batch


class TextLines:
    """Reads text lines; remembers the last second it converted (a second holds many lines)."""

    def __init__(self, log_format: Optional[str] = None) -> None:
        self.prefix = _prefix_pattern(log_format) if log_format else None
        self.fast = FastLines(self.prefix.pattern if self.prefix else DEFAULT_PREFIX, self.stamp)
        self._second: Tuple[str, float] = ("", 0.0)
        self._hours: Dict[str, float] = {}

    def parse(self, line: str, kinds: Optional[frozenset]) -> Optional[Record]:
        at, tag = locate(line)
        if at < 0 or (kinds is not None and KIND_OF_TAG[tag] not in kinds):
            return None
        fields = parse_message(line[at:], tag)
        stamp, pid, request_id = self._prefix(line[:at])
        return Record(fields["kind"], fields["name"], stamp, pid, request_id).fill(fields)

    def _prefix(self, prefix: str) -> Tuple[Optional[float], Optional[int], str]:
        if self.prefix is not None:
            found = self.prefix.fullmatch(prefix)
            if found is None:
                raise ValueError("the line does not follow the given log format")
            parts = found.groupdict()
            pid = parts.get("process")
            return (self.stamp(parts["asctime"]) if "asctime" in parts else None,
                    int(pid) if pid else None, parts.get("request_id") or "-")
        parts = prefix.split(" - ")
        # The default: time - request id - logger - level - ; or with the pid after the time
        # (the documented way to tell workers apart). ("- - -" is a line without a request id.)
        if len(parts) == 6 and parts[1].isdigit() and not parts[5]:
            return self.stamp(parts[0]), int(parts[1]), parts[2]
        if len(parts) == 5 and not parts[4]:
            return self.stamp(parts[0]), None, parts[1]
        found = _STAMP.search(prefix)
        return (self.stamp(found.group()) if found else None), None, "-"

    def stamp(self, text: str) -> float:
        """A local time as ``logging`` writes it (``2025-07-05 19:19:11,123`` or ISO 8601)."""
        whole, _, fraction = text.replace(".", ",").partition(",")
        if fraction and not fraction.isdigit():
            # A time with a zone after its fraction: ISO 8601, not a local time.
            return datetime.fromisoformat(text.replace(",", ".")).timestamp()
        if whole != self._second[0]:
            self._second = (whole, self._whole_second(whole, text))
        return self._second[1] + (float("0." + fraction) if fraction else 0.0)

    def _whole_second(self, whole: str, text: str) -> float:
        # strptime costs tens of microseconds: the local start of each hour is converted once
        # (zone offsets change on whole hours), minutes and seconds are added to it.
        hour, minute, second = whole[:13], whole[14:16], whole[17:19]
        if len(whole) != 19 or whole[13] != ":" or not (minute + second).isdigit():
            return datetime.fromisoformat(text).timestamp()
        start = self._hours.get(hour)
        if start is None:
            try:
                start = time.mktime(time.strptime(hour, "%Y-%m-%d %H"))
            except ValueError:
                return datetime.fromisoformat(text).timestamp()
            if len(self._hours) > 10_000:
                self._hours.clear()
            self._hours[hour] = start
        return start + int(minute) * 60 + int(second)


def _prefix_pattern(log_format: str) -> re.Pattern:
    """A pattern for what ``log_format`` writes before ``%(message)s``."""
    head, found, _ = log_format.partition("%(message)s")
    if not found:
        raise ValueError("log_format has no %(message)s")
    out, last = [], 0
    for field_ in _FIELD.finditer(head):
        out.append(re.escape(head[last:field_.start()]))
        out.append(_CAPTURE.get(field_.group(1), ".*?"))
        last = field_.end()
    out.append(re.escape(head[last:]))
    return re.compile("".join(out), re.S)


def _parse_json(line: str, kinds: Optional[frozenset]) -> Optional[Record]:
    if not line.strip():
        return None
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a JSON line that is not an object")
    kind = data.get("kind")
    if kind not in _KINDS:
        # Another JSON formatter: our message is in its "message".
        message = data.get("message")
        at, tag = locate(message) if isinstance(message, str) else (-1, "")
        if at != 0:
            return None
        data = {**data, **parse_message(message, tag)}
        kind = data["kind"]
    if kinds is not None and kind not in kinds:
        return None
    stamp = data.get("timestamp")
    pid = data.get("pid")
    return Record(kind, str(data["name"]),
                  datetime.fromisoformat(str(stamp)).timestamp() if stamp else None,
                  int(pid) if pid is not None else None,
                  str(data.get("request_id", "-"))).fill(data)
