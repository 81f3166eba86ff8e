"""The layout of sherlock_ai's own log messages, shared by the code that writes them
(:mod:`sherlock_ai.logs.lines`, the leak watch's warning) and the report that reads them back.

A message is ``TAG | name | STATUS | 0.245s | Label: value | Label: value ...``; a LEAK SUSPECT
message is ``LEAK SUSPECT | name | +4.04KB/request | file.py:80 +125.19KB (+31 blocks), ...
over 31 requests``; one for a leak tracemalloc cannot see is ``LEAK SUSPECT | name |
+64.00KB/request (native: not seen by tracemalloc) | RSS +3.00MB over 48 requests``. A LEAK
SUSPECT's name is a route's, or ``shared by A, B`` / ``not attributable``. The memory guard's
are ``MEMORY BUDGET | POST /export | +182.40MB > 50.00MB | RSS change`` and ``MEMORY LIMIT |
{state} | RSS 812.00MB > 800.00MB | ...`` (docs/memory-guard.md). Sizes are
:func:`sherlock_ai.formatting.format_bytes` figures. Whatever a log format puts before the
message (time, pid, request id, logger) is not part of it.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

SEP = " | "
MEMORY, PERFORMANCE, RESOURCES, LEAK_SUSPECT = "MEMORY", "PERFORMANCE", "RESOURCES", "LEAK SUSPECT"
MEMORY_BUDGET, MEMORY_LIMIT = "MEMORY BUDGET", "MEMORY LIMIT"
KIND_OF_TAG = {MEMORY: "memory", PERFORMANCE: "performance", RESOURCES: "resources",
               LEAK_SUSPECT: "leak_suspect", MEMORY_BUDGET: "memory_budget",
               MEMORY_LIMIT: "rss_limit"}
#: What a MEMORY BUDGET line compared: its ``measure`` field -> the line's last field.
MEASURE_LABELS = {"rss_change": "RSS change", "rss_peak": "RSS peak",
                  "traced_peak": "Traced peak"}
STATUSES = ("SUCCESS", "ERROR", "RETRY")
# Labels of the "Label: value" fields, in the order the writers put them.
CURRENT, CHANGE, TRACED, PEAK = "Current", "Change", "Traced", "Peak"
CPU, MEMORY_USE, THREADS, IO, NET = "CPU", "Memory", "Threads", "I/O", "Net"
ARGS, CONCURRENT, ERROR = "Args", "Concurrent", "Error"
_LABELS = (CURRENT, CHANGE, TRACED, CPU, MEMORY_USE, THREADS, IO, NET, ARGS, CONCURRENT, ERROR)

# A size as format_bytes writes it. The digits are bounded, so every size read is a finite
# number (a line of a thousand digits is not ours, it is not an infinite size).
_SIZE = re.compile(r"([+-]?)(\d{1,7}(?:\.\d{1,6})?)(B|KB|MB|GB|TB|PB)")
_SHIFT = {"B": 0, "KB": 10, "MB": 20, "GB": 30, "TB": 40, "PB": 50}
# A site another route shares reads "(+31 blocks, 25% of its growth)". Sites of a list start
# at its beginning or after ", " (a file name holds neither a comma nor a space): anchored
# there, each character of a line is tried by the pattern a bounded number of times, so a
# long hostile line costs linear time, not quadratic.
_AT_ITEM = r"(?:^|(?<=, ))"
_SITE = re.compile(_AT_ITEM + r"(?P<file>[^\s,]+):(?P<line>\d{1,9}) \+(?P<size>\S+) "
                   r"\((?P<count>[+-]\d{1,15}) blocks(?:, (?P<share>\d{1,3})% of its growth)?\)")
_OVER = re.compile(r" over (\d{1,15}) requests$")
#: The kinds of leak a LEAK SUSPECT names: seen by tracemalloc, or only in the RSS.
PYTHON, NATIVE = "python", "native"
NATIVE_NOTE = "native: not seen by tracemalloc"
#: The name of a suspect whose routes' counts moved in lockstep (``shared by A, B``), or of
#: one with more such routes than it names.
SHARED_BY, NOT_ATTRIBUTABLE = "shared by ", "not attributable"
_PER_REQUEST = re.compile(r"\+(?P<size>\S+)/request(?: \((?P<note>" + re.escape(NATIVE_NOTE)
                          + r")\))?")
_RSS = re.compile(r"RSS \+(\S+) over ")


def _site(found: re.Match[str]) -> Dict[str, Any]:
    site: Dict[str, Any] = {"file": found["file"], "line": int(found["line"]),
                            "size": parse_size(found["size"]), "count": int(found["count"])}
    if found["share"] is not None:
        site["share"] = int(found["share"]) / 100
    return site


class NotOurs(ValueError):
    """A message that starts with one of our tags but does not follow its layout."""


def parse_size(text: str) -> Optional[float]:
    """``"512.00MB"`` -> bytes; ``"n/a"`` -> ``None``; anything else raises ``ValueError``
    (also a number of more than seven digits: no size of ours has that many)."""
    if text == "n/a":
        return None
    found = _SIZE.fullmatch(text)
    if found is None:
        raise ValueError(f"not a size: {text!r}")
    sign, number, unit = found.groups()
    value = float(number) * (1 << _SHIFT[unit])
    return -value if sign == "-" else value


_TAG_SEARCH = re.compile(
    r"(?<![\w])(MEMORY BUDGET|MEMORY LIMIT|MEMORY|PERFORMANCE|RESOURCES|LEAK SUSPECT) \| ")


def locate(line: str) -> Tuple[int, str]:
    """Where our message starts in ``line`` and its tag, or ``(-1, "")`` when it has none."""
    found = _TAG_SEARCH.search(line)
    return (found.start(), found.group(1)) if found else (-1, "")


def parse_message(message: str, tag: str) -> Dict[str, Any]:
    """The fields of one of our messages (``tag`` from :func:`locate`): ``kind``, ``name`` and,
    by kind, ``status``, ``duration``, ``rss``, ``rss_change``, ``traced``, ``traced_peak``,
    ``concurrent``, ``error``, or ``per_request``, ``requests``, ``sites``, ``kind_of_leak``
    (``"python"`` or ``"native"``), ``attribution`` (``"route"``, ``"shared"`` for a name
    ``shared by A, B``, ``"none"`` for ``not attributable``) and, for a native leak,
    ``rss_growth``, or the memory guard's fields (see :func:`_budget` and :func:`_limit`).
    Raises :class:`NotOurs` when the message does not follow the layout."""
    parts = message.split(SEP)
    try:
        if tag == LEAK_SUSPECT:
            return _leak(parts)
        if tag == MEMORY_BUDGET:
            return _budget(parts)
        if tag == MEMORY_LIMIT:
            return _limit(parts)
        return _measurement(KIND_OF_TAG[tag], parts)
    except (ValueError, IndexError, KeyError) as exc:
        raise NotOurs(f"a {tag} message that does not parse: {exc}") from None


def _measurement(kind: str, parts: List[str]) -> Dict[str, Any]:
    # The name may hold " | ": the status and duration that follow it end it.
    end = 2 if parts[2] in STATUSES and parts[3].endswith("s") else next(
        (i for i in range(3, len(parts) - 1)
         if parts[i] in STATUSES and parts[i + 1].endswith("s")), 0)
    if not end:
        raise ValueError("no status and duration")
    out: Dict[str, Any] = {"kind": kind, "name": SEP.join(parts[1:end]), "status": parts[end],
                           "duration": float(parts[end + 1][:-1])}
    # Each field's pieces, joined once at the end (a repeated += join is quadratic).
    pieces: Dict[str, List[str]] = {}
    label = ""
    for part in parts[end + 2:]:
        head, colon, value = part.partition(": ")
        # Args and Error are free text that may hold " | "; Error is last, so it takes the rest.
        if colon and head in _LABELS and label != ERROR:
            label = head
            pieces[label] = [value]
        elif label:
            pieces[label].append(part)
        else:
            raise ValueError(f"unexpected field {part!r}")
    fields = {key: SEP.join(value) for key, value in pieces.items()}
    if kind == "memory":
        out["rss"] = parse_size(fields[CURRENT])
        out["rss_change"] = parse_size(fields[CHANGE])
        if TRACED in fields:
            traced, _, peak = fields[TRACED].partition(f" ({PEAK}: ")
            out["traced"] = parse_size(traced)
            out["traced_peak"] = parse_size(peak.rstrip(")"))
    elif kind == "resources":
        rss, _, change = fields[MEMORY_USE].partition(" (")
        out["rss"], out["rss_change"] = parse_size(rss), parse_size(change.rstrip(")"))
        out["cpu_percent"] = float(fields[CPU].rstrip("%"))
    out["concurrent"] = int(fields.get(CONCURRENT, 0))
    if ERROR in fields:
        out["error"] = fields[ERROR]
    return out


def _leak(parts: List[str]) -> Dict[str, Any]:
    end = next((i for i in range(2, len(parts)) if _PER_REQUEST.fullmatch(parts[i])), 0)
    if not end:
        raise ValueError("no per-request figure")
    figure = _PER_REQUEST.fullmatch(parts[end])
    assert figure is not None
    evidence = SEP.join(parts[end + 1:])
    over = _OVER.search(evidence)
    native = figure["note"] is not None
    name = SEP.join(parts[1:end])
    out: Dict[str, Any] = {
        "kind": "leak_suspect", "name": name,
        "per_request": parse_size(figure["size"]),
        "requests": int(over.group(1)) if over else None,
        "sites": [] if native else [_site(found) for found in _SITE.finditer(evidence)],
        "kind_of_leak": NATIVE if native else PYTHON,
        "attribution": ("shared" if name.startswith(SHARED_BY) else
                        "none" if name == NOT_ATTRIBUTABLE else "route")}
    if native:
        rss = _RSS.match(evidence)
        out["rss_growth"] = parse_size(rss.group(1)) if rss else None
    return out


_COMPARED = re.compile(r"(?P<measured>[+-]\S+) > (?P<budget>\S+)")
_RSS_VS = re.compile(r"RSS (?P<rss>\S+) (?P<op>[<>]) (?P<limit>\S+)")
# The end of one route's entry in "grew most: GET /a +12.00MB (30 requests), POST /b ...":
# the route before it runs from the previous entry's end (a route may hold spaces and ", ").
_GREW_END = re.compile(r" (?P<size>[+-][^\s(]{1,20}) \((?P<count>\d{1,15}) requests\)(?:, |$)")
_TOP = re.compile(_AT_ITEM + r"(?P<file>[^\s,]+):(?P<line>\d{1,9}) (?P<size>[+-][^\s,]+)(?:, |$)")
_SHED = re.compile(r"shed (\d+) requests")
_RECYCLE = re.compile(r"pid (\d+) exits after (\d+) in-flight requests")
_RETRY = re.compile(r"503 with Retry-After: (\d+)")
_LIMIT_STATES = {"crossed": "crossed", "back under": "back_under", "shedding": "shedding",
                 "recycling": "recycling"}


def _budget(parts: List[str]) -> Dict[str, Any]:
    """``MEMORY BUDGET | POST /export | +182.40MB > 50.00MB | RSS change``"""
    measure = {label: key for key, label in MEASURE_LABELS.items()}[parts[-1]]
    compared = _COMPARED.fullmatch(parts[-2])
    if compared is None or len(parts) < 4:
        raise ValueError("no 'measured > budget' figures")
    name = SEP.join(parts[1:-2])
    method, _, route = name.partition(" ")
    return {"kind": "memory_budget", "name": name, "method": method, "route": route or name,
            "measured_bytes": parse_size(compared["measured"]),
            "budget_bytes": parse_size(compared["budget"]), "measure": measure}


def _grew_most(part: str) -> List[Dict[str, Any]]:
    """``grew most: TASK a +1.00MB (3 requests), ...`` (or ``none``) as its entries, each
    with its bytes and requests."""
    text = part.partition("grew most: ")[2]
    out: List[Dict[str, Any]] = []
    if text == "none":
        return out
    start = 0
    for end in _GREW_END.finditer(text):
        if end.start() > start:
            out.append({"route": text[start:end.start()], "bytes": parse_size(end["size"]),
                        "requests": int(end["count"])})
        start = end.end()
    return out


def _limit(parts: List[str]) -> Dict[str, Any]:
    """``MEMORY LIMIT | {state} | RSS x >/< limit | ...`` (the five states of the guard)."""
    head = parts[1]
    shed = _SHED.fullmatch(head)
    state = "shed_stopped" if shed else _LIMIT_STATES[head]
    figures = _RSS_VS.fullmatch(parts[2])
    if figures is None:
        raise ValueError("no 'RSS x > limit' figures")
    out: Dict[str, Any] = {"kind": "rss_limit", "name": state, "state": state,
                           "rss_bytes": parse_size(figures["rss"]),
                           "limit_bytes": parse_size(figures["limit"])}
    rest = parts[3:]
    if state == "crossed":
        out["action"] = rest[0].partition("action: ")[2]
        out["grew_most"] = _grew_most(rest[1])
        if len(rest) > 2:
            out["top_sites"] = [
                {"file": t["file"], "line": int(t["line"]), "size": parse_size(t["size"])}
                for t in _TOP.finditer(rest[2].partition("top sites: ")[2])]
    elif state == "shedding":
        out["action"] = "shed"
        out["retry_after"] = int(_RETRY.fullmatch(rest[0]).group(1))  # type: ignore[union-attr]
    elif state == "shed_stopped":
        out["action"] = "shed"
        out["shed_requests"] = int(shed.group(1))  # type: ignore[union-attr]
    elif state == "recycling":
        found = _RECYCLE.fullmatch(rest[0])
        if found is None:
            raise ValueError("no pid and in-flight count")
        out["action"] = "recycle"
        out["pid"], out["in_flight"] = int(found.group(1)), int(found.group(2))
        for part in rest[1:]:
            if part.startswith("grew most: "):
                out["grew_most"] = _grew_most(part)
    return out
