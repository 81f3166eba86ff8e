"""Reading the records sherlock_ai wrote, one at a time, from text and JSON lines.

Text lines: our message (``MEMORY | ...``) is found wherever the log format puts it and read
through :mod:`sherlock_ai.logs.schema`; what comes before it is read for the time, the pid and
the request id: the default format (no pid) and the same with ``%(process)d`` after the time
field by field, a format given with ``log_format`` exactly, any other by finding a time stamp in it.
JSON lines: by their fields (:class:`sherlock_ai.JsonFormatter`), or by their ``message`` when
another JSON formatter wrote them. Records of other loggers, tracebacks and continuation lines
are passed over; a line that should be ours but cannot be read is counted as bad.

Files that hold every logger's lines (``app.*``, a single file, standard input) are read
strictly: a record counts only when one of our loggers wrote it, with the tag at the start of
its message; a tag of ours anywhere else (a User-Agent in an access line, user text) is
counted as a foreign tag and not read.

Every figure read is checked: finite, within bounds (:func:`figure`), times between 1970
and 9999; a record that fails is counted as bad, never a crash. Names are made printable
(:func:`printable`): control and format characters, lone surrogates become escapes.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Tuple, Union

from ..bounded import BoundedCache
from ..logs.lines import MONITORING_LOGGER, PERFORMANCE_LOGGER
from ..logs.schema import KIND_OF_TAG, locate, parse_message, parse_size
from .checks import (
    LARGEST_PID,
    LONGEST_DURATION,
    count_of,
    figure,
    iso_datetime,
    printable,
    stamp_checked,
)
from .fastpath import DEFAULT_PREFIX, SKIP, FastLines, Row, Skip
from .files import TOO_LONG, is_json, log_files, read_lines, read_stream, wanted_kinds

__all__ = ["LogRecords", "ReadStats", "Record", "figure", "log_files", "parse_size",
           "printable", "read_logs"]

OUR_LOGGERS = frozenset({MONITORING_LOGGER, PERFORMANCE_LOGGER})
# What a line failing to parse raises: the line is counted as bad, the report goes on.
BAD_LINE = (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, IndexError,
            RecursionError, OSError)
# The default text layout, found after whatever a collector put before it (kubectl, docker):
# its time, pid, request id and one of our loggers' names, the message right after.
_OURS_AFTER_PREFIX = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d{1,6})? - (?:\d{1,10} - )?\S* - "
    r"(?:MonitoringLogger|PerformanceLogger) - [A-Z]{1,10} - "
    r"(?:MEMORY BUDGET|MEMORY LIMIT|MEMORY|PERFORMANCE|RESOURCES|LEAK SUSPECT) \| ")


_KINDS = frozenset(KIND_OF_TAG.values())
#: The longest prefix a log collector puts before a line in a given format, and how many
#: places in it a reader tries (a standard input read with ``--log-format``).
COLLECTOR_PREFIX = 256
_STARTS_TRIED = 32
# The fields of the memory guard's records (the line schema's and the JSON lines' names).
EVENT_FIELDS = {"memory_budget": ("route", "measured_bytes", "budget_bytes", "measure"),
                "rss_limit": ("state", "rss_bytes", "limit_bytes", "action")}
_STAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?")
_TIME = r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?"
_FIELD = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]")
# The groups the reader takes from a log format's fields (the others are matched, not kept).
_CAPTURE = {"asctime": "asctime", "process": "process", "request_id": "request_id",
            "name": "logger"}


class Record:
    """One of our records: its kind (memory, performance, resources, leak_suspect, and the
    memory guard's memory_budget and rss_limit, whose figures are in ``event``), name,
    time (seconds since the epoch, ``None`` when the line shows none), pid (``None`` in logs
    written before lines carried one) and figures (bytes, seconds; ``None`` when not shown)."""

    __slots__ = ("kind", "name", "timestamp", "pid", "request_id", "status", "duration", "rss",
                 "rss_change", "traced_peak", "per_request", "requests", "sites", "event")

    def __init__(self, kind: str, name: str, timestamp: Optional[float],
                 pid: Optional[int] = None, request_id: str = "-") -> None:
        self.kind, self.name, self.timestamp, self.pid = kind, printable(name), timestamp, pid
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
        """Take the figures of ``fields`` (a parsed message or a JSON object); ``ValueError``
        when one is not what the layout says (a text for a number, NaN, out of bounds)."""
        get = fields.get
        if self.kind in EVENT_FIELDS:
            self.event = {key: _event_value(key, get(key)) for key in EVENT_FIELDS[self.kind]}
            return self
        if self.kind == "leak_suspect":
            self.per_request = figure(fields["per_request"])
            self.requests = count_of(get("requests"))
            self.sites = [_site(s) for s in get("sites") or ()]
            # Older suspects carry no kind: they are all leaks tracemalloc saw.
            kind = get("kind_of_leak") or "python"
            if kind not in ("python", "native"):
                raise ValueError(f"not a kind of leak: {kind!r}")
            self.event = {"kind_of_leak": kind}
            return self
        status = fields["status"]
        if status not in ("SUCCESS", "ERROR"):
            raise ValueError(f"not a status: {status!r}")
        self.status = status
        self.duration = figure(fields["duration"], LONGEST_DURATION, 0.0)
        for key in ("rss", "rss_change", "traced_peak"):
            value = get(key)
            if value is not None:
                setattr(self, key, figure(value))
        return self


def _event_value(key: str, value: Any) -> Any:
    """A figure of the memory guard's records: bytes are numbers, the others texts."""
    if value is None:
        return None
    if key.endswith("_bytes"):
        return figure(value)
    if type(value) is not str:
        raise ValueError(f"{key} is not a text: {value!r}")
    return printable(value)


def _site(site: Any) -> Dict[str, Any]:
    """An allocation site of a LEAK SUSPECT record, with only its known, checked fields."""
    if not isinstance(site, dict):
        raise ValueError(f"a site that is not an object: {site!r}")
    out: Dict[str, Any] = {"file": printable(str(site.get("file", "?"))),
                           "line": count_of(site.get("line"))}
    for key in ("size", "count", "share"):
        if site.get(key) is not None:
            out[key] = figure(site[key])
    return out


@dataclass
class ReadStats:
    """What reading found: files, their bytes on disk, our records, lines skipped (unreadable;
    over :data:`LINE_LIMIT` bytes, whoever wrote them), files that could not be read,
    records without a time stamp, lines of other loggers that carried one of our tags where
    every logger writes (not read), and files left out (a rotation present twice, a link
    out of the folder)."""

    files: List[Path] = field(default_factory=list)
    bytes: int = 0
    records: int = 0
    bad_lines: int = 0
    bad_examples: List[str] = field(default_factory=list)
    bad_files: List[str] = field(default_factory=list)
    untimed: int = 0
    long_lines: int = 0
    foreign_tags: int = 0
    left_out: List[str] = field(default_factory=list)

    def bad(self, path: Path, line: str) -> None:
        self.bad_lines += 1
        if len(self.bad_examples) < 3:
            self.bad_examples.append(f"{path.name}: {line[:120]}")


STDIN = Path("-")


def read_logs(logs_dir: Path, stats: ReadStats,
              progress: Optional[Callable[[int], None]] = None,
              log_format: Optional[str] = None) -> LogRecords:
    """Every record of ours in ``logs_dir``, streamed; ``progress`` is told the bytes read.
    ``logs_dir`` may also be one file, or ``Path("-")`` for standard input: read strictly,
    text and JSON lines alike, whatever a log collector put before each record.
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
        text = TextLines(self.log_format)

        def told(n: int) -> None:
            stats.bytes += n
            if progress is not None:
                progress(n)

        if self.logs_dir == STDIN or not self.logs_dir.is_dir():
            yield from self._stream(text, told, size)
            return
        files = log_files(self.logs_dir, stats.left_out)
        keep = wanted_kinds(files)
        stats.files = files
        for path in files:
            kinds = keep[path]
            # Files that hold every logger's lines are read strictly.
            strict = kinds is not None
            if is_json(path):
                fast, slow = text.fast.json, (_strict_json if strict else _parse_json)
            else:
                fast, slow = text.fast.text, (text.parse_strict if strict else text.parse)
            yield from self._read(path, read_lines(path, told), fast, slow, kinds, strict,
                                  size)

    def _stream(self, text: TextLines, told: Callable[[int], None],
                size: int) -> Iterator[List[Union[Row, Record]]]:
        """One file, or standard input: every logger's lines, JSON or text, each record
        after whatever prefix a collector wrote."""
        path = self.logs_dir
        self.stats.files = [path]
        lines = read_stream(sys.stdin.buffer, told) if path == STDIN else read_lines(path, told)
        yield from self._read(path, lines, text.fast.text, text.parse_any, None, True, size)

    def _read(self, path: Path, lines: Iterable[str],
              fast: Callable[..., Union[Row, Skip, None]],
              slow: Callable[[str, Optional[FrozenSet[str]]], Optional[Record]],
              kinds: Optional[FrozenSet[str]], strict: bool, size: int
              ) -> Iterator[List[Union[Row, Record]]]:
        stats = self.stats
        batch: List[Union[Row, Record]] = []
        record: Union[Row, Record, Skip, None]
        add = batch.append
        try:
            for line in lines:
                if line is TOO_LONG:
                    stats.long_lines += 1
                    continue
                try:
                    record = fast(line, kinds, strict)
                    if record is None:
                        record = slow(line, kinds)
                        if record is None:
                            continue
                        if record is FOREIGN:
                            stats.foreign_tags += 1
                            continue
                    elif record is SKIP:
                        continue
                except BAD_LINE:
                    stats.bad(path, line)
                    continue
                if (record[2] if isinstance(record, tuple) else record.timestamp) is None:
                    stats.untimed += 1
                add(record)
                if len(batch) >= size:
                    stats.records += len(batch)
                    yield batch
                    batch = []
                    add = batch.append
        except (OSError, EOFError) as exc:
            # A truncated or corrupt .gz: what was read counts, the rest is reported.
            stats.bad_files.append(printable(f"{path.name}: {exc}"))
        stats.records += len(batch)
        yield batch


# What the strict readers return for a line of another logger that carries one of our tags.
FOREIGN = Record("foreign", "", None)


class TextLines:
    """Reads text lines; remembers the last second it converted (a second holds many lines)."""

    def __init__(self, log_format: Optional[str] = None) -> None:
        self.prefix = _prefix_pattern(log_format) if log_format else None
        self.fast = FastLines(self.prefix.pattern if self.prefix else DEFAULT_PREFIX, self.stamp)
        self._second: Tuple[str, float] = ("", 0.0)
        self._hours: BoundedCache[str, float] = BoundedCache(10_000)

    def parse(self, line: str, kinds: Optional[FrozenSet[str]]) -> Optional[Record]:
        """The record of a line of one of our loggers' own files (the tag found anywhere)."""
        at, tag = locate(line)
        if at < 0 or (kinds is not None and KIND_OF_TAG[tag] not in kinds):
            return None
        fields = parse_message(line[at:], tag)
        stamp, pid, request_id, _ = self._prefix(line[:at])
        return Record(fields["kind"], fields["name"], stamp, pid, request_id).fill(fields)

    def parse_strict(self, line: str, kinds: Optional[FrozenSet[str]]) -> Optional[Record]:
        """The record of a line of a file every logger writes: only when the line follows
        the default or the given format, one of our loggers wrote it (when the format names
        the logger) and its message starts with our tag; :data:`FOREIGN` for another line
        that carries one of our tags."""
        at, tag = locate(line)
        if at < 0:
            return None
        stamp, pid, request_id, logger = self._prefix(line[:at], strict=True)
        if logger is not None and logger not in OUR_LOGGERS:
            return FOREIGN
        if kinds is not None and KIND_OF_TAG[tag] not in kinds:
            return None
        fields = parse_message(line[at:], tag)
        return Record(fields["kind"], fields["name"], stamp, pid, request_id).fill(fields)

    def parse_any(self, line: str, kinds: Optional[FrozenSet[str]]) -> Optional[Record]:
        """A line of one file or standard input: a JSON record or a text one, strictly, after
        whatever prefix a log collector wrote (``kubectl logs --prefix``, ``docker logs -t``)."""
        brace = line.find("{")
        if brace >= 0:
            try:
                data = json.loads(line[brace:])
            except ValueError:
                data = None
            if isinstance(data, dict):
                return _strict_json(line[brace:], kinds)
        at, _ = locate(line)
        if at < 0:
            return None
        if self.prefix is None:
            ours = _OURS_AFTER_PREFIX.search(line)
            if ours is None:
                return FOREIGN
            line = line[ours.start():]
        else:
            start = self._collector_prefix(line[:at])
            if start < 0:
                return FOREIGN
            line = line[start:]
        record = self.fast.text(line, kinds, True)
        if record is SKIP:
            return None
        if record is not None:
            return Record.from_row(record)
        return self.parse_strict(line, kinds)

    def _collector_prefix(self, head: str) -> int:
        """Where the given log format starts in ``head`` (the line before our tag), after a
        collector's prefix of at most :data:`COLLECTOR_PREFIX` characters that ends with a
        space or ``]``; -1 when it does not. (Tried at those places only: trying every place
        costs time quadratic in the line's length.)"""
        assert self.prefix is not None
        starts = [0] + [i + 1 for i, c in enumerate(head[:COLLECTOR_PREFIX]) if c in " ]"]
        for start in starts[:_STARTS_TRIED]:
            if self.prefix.fullmatch(head, start):
                return start
        return -1

    def _prefix(self, prefix: str, strict: bool = False
                ) -> Tuple[Optional[float], Optional[int], str, Optional[str]]:
        """Time, pid, request id and logger name (``None`` when the format has none) of the
        part of a line before our message."""
        if self.prefix is not None:
            found = self.prefix.fullmatch(prefix)
            if found is None:
                if strict:
                    # Not our layout: not ours, whatever the tag says.
                    return None, None, "-", ""
                raise ValueError("the line does not follow the given log format")
            parts = found.groupdict()
            return (self.stamp(parts["asctime"]) if "asctime" in parts else None,
                    _pid(parts.get("process")), parts.get("request_id") or "-",
                    parts.get("logger"))
        fields = prefix.split(" - ")
        # The default: time - request id - logger - level - ; or with the pid after the time
        # (the documented way to tell workers apart). ("- - -" is a line without a request id.)
        if len(fields) == 6 and fields[1].isdigit() and not fields[5]:
            return self.stamp(fields[0]), _pid(fields[1]), fields[2], fields[3]
        if len(fields) == 5 and not fields[4]:
            return self.stamp(fields[0]), None, fields[1], fields[2]
        if strict:
            # Not our layout: not ours, whatever the tag says.
            return None, None, "-", ""
        found = _STAMP.search(prefix)
        return (self.stamp(found.group()) if found else None), None, "-", None

    def stamp(self, text: str) -> float:
        """A local time as ``logging`` writes it (``2025-07-05 19:19:11,123`` or ISO 8601);
        ``ValueError`` for a time before 1970 or after 9999."""
        whole, _, fraction = text.replace(".", ",").partition(",")
        if fraction and not fraction.isdigit():
            # A time with a zone after its fraction: ISO 8601, not a local time.
            return stamp_checked(iso_datetime(text).timestamp())
        if whole != self._second[0]:
            self._second = (whole, stamp_checked(self._whole_second(whole, text)))
        return self._second[1] + (float("0." + fraction[:9]) if fraction else 0.0)

    def _whole_second(self, whole: str, text: str) -> float:
        # strptime costs tens of microseconds: the local start of each hour is converted once
        # (zone offsets change on whole hours), minutes and seconds are added to it.
        hour, minute, second = whole[:13], whole[14:16], whole[17:19]
        if len(whole) != 19 or whole[13] != ":" or not (minute + second).isdigit():
            return iso_datetime(text).timestamp()
        start = self._hours.get(hour)
        if start is None:
            try:
                start = time.mktime(time.strptime(hour, "%Y-%m-%d %H"))
            except ValueError:
                return iso_datetime(text).timestamp()
            self._hours.keep(hour, start)
        return start + int(minute) * 60 + int(second)


def _prefix_pattern(log_format: str) -> re.Pattern[str]:
    """A pattern for what ``log_format`` writes before ``%(message)s``. A field's value runs
    up to the first occurrence of the text that follows it in the format; fields with no text
    between them are matched as one (and none of them is read): there is one way to match a
    line, so a hostile line costs time linear in its length, never polynomial."""
    head, found, _ = log_format.partition("%(message)s")
    if not found:
        raise ValueError("log_format has no %(message)s")
    fields = list(_FIELD.finditer(head))
    out = [re.escape(head[:fields[0].start()] if fields else head)]
    run: List[str] = []
    for i, field_ in enumerate(fields):
        run.append(field_.group(1))
        after = head[field_.end():fields[i + 1].start() if i + 1 < len(fields) else None]
        if not after and i + 1 < len(fields):
            continue
        if run == ["process"]:
            value = r"\d{1,10}"
        elif run == ["asctime"]:
            # The times stamp() reads; a time holds spaces, so it cannot run to the next one.
            value = _TIME
        elif after:
            value = f"(?:(?!{re.escape(after)}).)*"
        else:
            # The last field, our tag right after it: as little as it can take.
            value = ".*?"
        group = _CAPTURE.get(run[0]) if len(run) == 1 else None
        out.append(f"(?P<{group}>{value})" if group else value)
        out.append(re.escape(after))
        run = []
    return re.compile("".join(out), re.S)


def _pid(text: Optional[str]) -> Optional[int]:
    if not text:
        return None
    if len(text) > 10 or not text.isdigit():
        raise ValueError(f"not a pid: {text!r}")
    return int(text)


def _strict_json(line: str, kinds: Optional[FrozenSet[str]]) -> Optional[Record]:
    """A JSON line of a file every logger writes: ours only when one of our loggers wrote it
    (its ``logger``, or the ``name`` another JSON formatter gives the logger)."""
    return _parse_json(line, kinds, strict=True)


def _parse_json(line: str, kinds: Optional[FrozenSet[str]], strict: bool = False
                ) -> Optional[Record]:
    if not line.strip():
        return None
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a JSON line that is not an object")
    if strict:
        logger = data.get("logger", data.get("name") if "kind" not in data else None)
        if logger not in OUR_LOGGERS:
            message = data.get("message")
            return FOREIGN if isinstance(message, str) and locate(message)[0] >= 0 else None
    kind = data.get("kind")
    if kind not in _KINDS:
        # Another JSON formatter: our message is in its "message".
        message = data.get("message")
        if not isinstance(message, str):
            return None
        at, tag = locate(message)
        if at != 0:
            return None
        data = {**data, **parse_message(message, tag)}
        kind = data["kind"]
    if kinds is not None and kind not in kinds:
        return None
    stamp = data.get("timestamp")
    pid = data.get("pid")
    if pid is not None and (type(pid) is not int or not 0 <= pid < LARGEST_PID):
        raise ValueError(f"not a pid: {pid!r}")
    name = data["name"]
    if type(name) is not str:
        raise ValueError(f"a name that is not a text: {name!r}")
    return Record(kind, name,
                  stamp_checked(iso_datetime(str(stamp)).timestamp()) if stamp
                  else None, pid, printable(str(data.get("request_id", "-")))).fill(data)
