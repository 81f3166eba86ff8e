"""A process's flight record: a fixed-size file mapped into memory, written with plain stores.

Layout (little-endian, :data:`SIZE` bytes):

- a header: who the process is (pid, the kernel's start time of the pid, wall-clock start),
  its memory cgroup (the file counting the kernel's OOM kills, the count when last looked at,
  the limit), its supervisor's pid when one tells deaths, its state (open, closed), how many
  requests found every slot taken; and the verdict the process that told its death wrote;
- :data:`SLOTS` in-flight slots: start time, RSS at start, kind (the HTTP method, or
  ``TASK``), name (the path, or the task's name), request id, and last a serial number that
  is zero for a free slot. Fields are packed in order, the serial last, so a slot is never
  taken for in flight before its fields are written;
- a ring of :data:`RING` RSS readings (serial, time, bytes), one a second from the
  process's watcher. The readings the requests took at their start stay in their slots
  (freed or not) and are read as readings too.

Nothing here makes a system call per request: :meth:`FlightRecord.opened` and
:meth:`FlightRecord.closed` are stores into the shared mapping, which the kernel keeps in the
page cache when the process is killed.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from time import time
from typing import List, Optional, Tuple

MAGIC = b"SHKFLT01"
VERSION = 1
SLOTS = 32
RING = 64
OPEN, CLOSED = 1, 2
#: The file name's suffix while the process may be alive, and once its death was claimed.
LIVE_SUFFIX, TOLD_SUFFIX = ".rec", ".died"

# Header parts: (offset, layout).
_IDENTITY = (0, struct.Struct("<8sIIQdQqI"))  # magic version pid ticks started limit oom sup
_CGROUP_FILE = (64, struct.Struct("<256s"))
_STATE = (320, struct.Struct("<II"))  # state, requests not recorded (every slot taken)
_BEAT = (328, struct.Struct("<dq"))  # last heartbeat, OOM kill count then
# Told at, told by pid, signal, exit code (-1: none), cause, evidence.
_VERDICT = (512, struct.Struct("<dIii16s476s"))
HEADER_SIZE = 1024
_SLOT = struct.Struct("<dQ8s100s128sI")
_SLOT_SIZE = _SLOT.size
_SLOT_SERIAL_AT = _SLOT_SIZE - 4
_RING_ENTRY = struct.Struct("<QdQ")
_RING_SIZE = _RING_ENTRY.size
_SLOTS_AT = HEADER_SIZE
_RING_AT = _SLOTS_AT + SLOTS * _SLOT.size
SIZE = _RING_AT + RING * _RING_ENTRY.size

#: The header's parts, (offset, layout) each; a test checks that none overlaps the next.
HEADER_PARTS = (_IDENTITY, _CGROUP_FILE, _STATE, _BEAT, _VERDICT)

_pack_slot = _SLOT.pack_into
_pack_reading = _RING_ENTRY.pack_into
# Each slot's offsets, computed once: the stores inside a request allocate no int.
_SLOT_AT = tuple(_SLOTS_AT + slot * _SLOT_SIZE for slot in range(SLOTS))
_SERIAL_AT = tuple(at + _SLOT_SERIAL_AT for at in _SLOT_AT)


def record_name(pid: int, ticks: int) -> str:
    """The file name of the live record of process ``pid`` started at ``ticks``."""
    return f"{pid}-{ticks}{LIVE_SUFFIX}"


def parse_name(name: str) -> Optional[Tuple[int, int]]:
    """``(pid, ticks)`` of a record's file name, else ``None``."""
    stem = name.split(".", 1)[0]
    pid, _, ticks = stem.partition("-")
    if not pid.isdigit() or not ticks.isdigit():
        return None
    return int(pid), int(ticks)


class FlightRecord:
    """This process's record, created in ``folder``; the mapping stays valid until
    :meth:`close`."""

    __slots__ = ("path", "_mm", "_free", "_reading", "_not_recorded")

    def __init__(self, folder: Path, pid: int, ticks: int, cgroup_file: str,
                 oom_kills: int, limit: int, supervisor: int) -> None:
        self.path = folder / record_name(pid, ticks)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, SIZE)
            self._mm = mm = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        offset, layout = _IDENTITY
        layout.pack_into(mm, offset, MAGIC, VERSION, pid, ticks, time(), limit, oom_kills,
                         supervisor)
        offset, layout = _CGROUP_FILE
        layout.pack_into(mm, offset, cgroup_file.encode("utf-8", "replace"))
        _STATE[1].pack_into(mm, _STATE[0], OPEN, 0)
        self._free = list(range(SLOTS - 1, -1, -1))
        self._reading = 0
        self._not_recorded = 0

    def opened(self, kind: str, name: str, rss: Optional[int] = None,
               request_id: str = "") -> int:
        """Record one request (or task) in flight: its kind, name, the RSS it read when it
        began (just before this call) and its request id; returns its slot for
        :meth:`closed`, or -1 when every slot was taken (then counted)."""
        try:
            slot = self._free.pop()
        except IndexError:
            self._not_recorded += 1
            _STATE[1].pack_into(self._mm, _STATE[0], OPEN, self._not_recorded)
            return -1
        # One store of the whole slot, its serial (slot + 1, never zero) last. The slot's
        # start and RSS stay after it is freed: the reader takes them as readings too.
        _pack_slot(self._mm, _SLOT_AT[slot], time(), rss or 0, kind.encode(),
                   name.encode("utf-8", "replace"), request_id.encode(), slot + 1)
        return slot

    def closed(self, slot: int) -> None:
        """The request of ``slot`` (from :meth:`opened`) is no longer in flight; allocates
        nothing and never raises."""
        if slot >= 0:
            try:
                # The serial (at most SLOTS) lives in its first byte: one byte store frees it.
                self._mm[_SERIAL_AT[slot]] = 0
            except ValueError:
                return  # the record was closed meanwhile
            self._free.append(slot)

    def heartbeat(self, now: float, rss: Optional[int], oom_kills: int) -> None:
        """The watcher's once-a-second store: alive at ``now``, the RSS read after ``now``,
        this OOM kill count."""
        mm = self._mm
        _BEAT[1].pack_into(mm, _BEAT[0], now, oom_kills)
        if rss:
            reading = self._reading = self._reading + 1
            _pack_reading(mm, _RING_AT + reading % RING * _RING_SIZE, reading, now, rss)

    def close(self) -> None:
        """Mark the record closed (a graceful exit), unmap it and remove its file."""
        mm = self._mm
        _STATE[1].pack_into(mm, _STATE[0], CLOSED, self._not_recorded)
        mm.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass  # closed is what readers look at; the file is removed when seen


@dataclass
class InFlight:
    """One request (or task) a process had in flight."""

    kind: str
    name: str
    request_id: str
    started_at: float
    rss_at_start: Optional[int]


@dataclass
class Verdict:
    """What the process that told a death wrote into its record."""

    told_at: float
    told_by: int
    signal: int
    exit_code: Optional[int]
    cause: str
    evidence: Optional[str]


@dataclass
class RecordView:
    """A record read back from its file (by another process, or after every one ended)."""

    path: Path
    pid: int
    ticks: int
    started_at: float
    limit: Optional[int]
    oom_kills_at_start: Optional[int]
    supervisor: int
    cgroup_file: str
    closed: bool
    not_recorded: int
    heartbeat: Optional[float]
    oom_kills_last_seen: Optional[int]
    verdict: Optional[Verdict]
    in_flight: List[InFlight] = field(default_factory=list)
    #: ``(time, rss)`` oldest first.
    readings: List[Tuple[float, int]] = field(default_factory=list)


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def read_record(path: Path) -> Optional[RecordView]:
    """The record of ``path``, or ``None`` when it is not one (or was cut short)."""
    with open(path, "rb") as file:
        data = file.read(SIZE)
    if len(data) < SIZE:
        return None
    magic, version, pid, ticks, started, limit, oom, supervisor = _IDENTITY[1].unpack_from(
        data, _IDENTITY[0])
    if magic != MAGIC or version != VERSION:
        return None
    (cgroup_raw,) = _CGROUP_FILE[1].unpack_from(data, _CGROUP_FILE[0])
    state, not_recorded = _STATE[1].unpack_from(data, _STATE[0])
    beat, beat_oom = _BEAT[1].unpack_from(data, _BEAT[0])
    told_at, told_by, signal, exit_code, cause, evidence = _VERDICT[1].unpack_from(
        data, _VERDICT[0])
    view = RecordView(
        path=path, pid=pid, ticks=ticks, started_at=started, limit=limit or None,
        oom_kills_at_start=oom if oom >= 0 else None, supervisor=supervisor,
        cgroup_file=_text(cgroup_raw), closed=state == CLOSED, not_recorded=not_recorded,
        heartbeat=beat or None, oom_kills_last_seen=beat_oom if beat and beat_oom >= 0 else None,
        verdict=Verdict(told_at, told_by, signal, None if exit_code < 0 else exit_code,
                        _text(cause), _text(evidence) or None) if told_at else None)
    readings = []
    for slot in range(SLOTS):
        start, rss, kind, name, request_id, serial = _SLOT.unpack_from(
            data, _SLOTS_AT + slot * _SLOT.size)
        if serial:
            view.in_flight.append(InFlight(_text(kind), _text(name), _text(request_id), start,
                                           rss or None))
        if start and rss:
            readings.append((start, rss))
    view.in_flight.sort(key=lambda entry: entry.started_at)
    for serial, t, rss in (_RING_ENTRY.unpack_from(data, _RING_AT + i * _RING_ENTRY.size)
                           for i in range(RING)):
        if serial:
            readings.append((t, rss))
    view.readings = sorted(readings)
    return view


def write_verdict(path: Path, verdict: Verdict) -> None:
    """Write what the teller found into the record of ``path`` (claimed by it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, _VERDICT[1].pack(
            verdict.told_at, verdict.told_by, verdict.signal,
            -1 if verdict.exit_code is None else verdict.exit_code,
            verdict.cause.encode("ascii", "replace"),
            (verdict.evidence or "").encode("utf-8", "replace")), _VERDICT[0])
    finally:
        os.close(fd)
