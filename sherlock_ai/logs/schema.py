"""The layout of sherlock_ai's own log messages, shared by the code that writes them
(:mod:`sherlock_ai.logs.lines`, the leak watch's warning) and the report that reads them back.

A message is ``TAG | name | STATUS | 0.245s | Label: value | Label: value ...``; a LEAK SUSPECT
message is ``LEAK SUSPECT | name | +4.04KB/request | file.py:80 +125.19KB (+31 blocks), ...
over 31 requests``. Sizes are :func:`sherlock_ai.logs.formatting.format_bytes` figures. Whatever a
log format puts before the message (time, pid, request id, logger) is not part of it.
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
STATUSES = ("SUCCESS", "ERROR")
# Labels of the "Label: value" fields, in the order the writers put them.
CURRENT, CHANGE, TRACED, PEAK = "Current", "Change", "Traced", "Peak"
CPU, MEMORY_USE, THREADS, IO, NET = "CPU", "Memory", "Threads", "I/O", "Net"
ARGS, CONCURRENT, ERROR = "Args", "Concurrent", "Error"
_LABELS = (CURRENT, CHANGE, TRACED, CPU, MEMORY_USE, THREADS, IO, NET, ARGS, CONCURRENT, ERROR)

_SIZE = re.compile(r"([+-]?)(\d+(?:\.\d+)?)(B|KB|MB|GB|TB|PB)")
_SHIFT = {"B": 0, "KB": 10, "MB": 20, "GB": 30, "TB": 40, "PB": 50}
# A site another route shares reads "(+31 blocks, 25% of its growth)".
_SITE = re.compile(r"(?P<file>[^\s,]+):(?P<line>\d+) \+(?P<size>\S+) \((?P<count>[+-]\d+) blocks"
                   r"(?:, (?P<share>\d+)% of its growth)?\)")
_OVER = re.compile(r" over (\d+) requests$")


def _site(found: re.Match[str]) -> Dict[str, Any]:
    site: Dict[str, Any] = {"file": found["file"], "line": int(found["line"]),
                            "size": parse_size(found["size"]), "count": int(found["count"])}
    if found["share"] is not None:
        site["share"] = int(found["share"]) / 100
    return site


class NotOurs(ValueError):
    """A message that starts with one of our tags but does not follow its layout."""


def parse_size(text: str) -> Optional[float]:
    """``"512.00MB"`` -> bytes; ``"n/a"`` -> ``None``; anything else raises ``ValueError``."""
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
    ``concurrent``, ``error``, or ``per_request``, ``requests``, ``sites``. Raises
    :class:`NotOurs` when the message does not follow the layout."""
    parts = message.split(SEP)
    try:
        if tag == LEAK_SUSPECT:
            return _leak(parts)
        if tag in (MEMORY_BUDGET, MEMORY_LIMIT):
            return _guard(tag, parts)
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
    fields: Dict[str, str] = {}
    label = ""
    for part in parts[end + 2:]:
        head, colon, value = part.partition(": ")
        # Args and Error are free text that may hold " | "; Error is last, so it takes the rest.
        if colon and head in _LABELS and label != ERROR:
            label = head
            fields[label] = value
        elif label:
            fields[label] += SEP + part
        else:
            raise ValueError(f"unexpected field {part!r}")
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
    end = next((i for i in range(2, len(parts))
                if parts[i].startswith("+") and parts[i].endswith("/request")), 0)
    if not end:
        raise ValueError("no per-request figure")
    evidence = SEP.join(parts[end + 1:])
    over = _OVER.search(evidence)
    sites = [_site(found) for found in _SITE.finditer(evidence)]
    return {"kind": "leak_suspect", "name": SEP.join(parts[1:end]),
            "per_request": parse_size(parts[end][1:-len("/request")]),
            "requests": int(over.group(1)) if over else None, "sites": sites}


# The memory guard's lines: "MEMORY BUDGET | route | +182.40MB > 50.00MB | RSS change" and
# "MEMORY LIMIT | crossed | RSS 812.00MB > 800.00MB | action: log | ...".
_GUARD_STATES = {"crossed": "crossed", "back under": "back_under", "shedding": "shedding",
                 "recycling": "recycling"}
_MEASURES = {"RSS change": "rss_change", "Traced peak": "traced_peak"}
_COMPARED = re.compile(r"(?:RSS )?(\S+) [<>] (\S+)")


def _guard(tag: str, parts: List[str]) -> Dict[str, Any]:
    if tag == MEMORY_BUDGET:
        measured, budget = _COMPARED.fullmatch(parts[-2]).groups()  # type: ignore[union-attr]
        route = SEP.join(parts[1:-2])
        if not route:
            raise ValueError("no route")
        return {"kind": "memory_budget", "name": route, "route": route,
                "measured_bytes": parse_size(measured), "budget_bytes": parse_size(budget),
                "measure": _MEASURES[parts[-1]]}
    state = _GUARD_STATES.get(parts[1]) or (
        "shed_stopped" if re.fullmatch(r"shed \d+ requests", parts[1]) else None)
    if state is None:
        raise ValueError(f"unknown state {parts[1]!r}")
    rss, limit = _COMPARED.fullmatch(parts[2]).groups()  # type: ignore[union-attr]
    action = next((p[len("action: "):] for p in parts[3:] if p.startswith("action: ")), None)
    return {"kind": "rss_limit", "name": MEMORY_LIMIT, "state": state,
            "rss_bytes": parse_size(rss), "limit_bytes": parse_size(limit), "action": action}
