"""The memory guard's option values: sizes (``52428800``, ``"50MB"``), shares of the memory the
process may use (``"80%"``), per-route budgets and the action on the RSS limit, each checked
once, at set-up, with an error that says what is accepted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional, Union

ACTIONS = ("log", "shed", "recycle")
_UNITS = {"": 0, "B": 0, "KB": 10, "K": 10, "KIB": 10, "MB": 20, "M": 20, "MIB": 20,
          "GB": 30, "G": 30, "GIB": 30, "TB": 40, "T": 40, "TIB": 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
_SHARE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")
_SIZE_HELP = "bytes as an int, or a string such as '50MB' (B, KB, MB, GB, TB; 1024 base)"
_RSS_LIMIT_HELP = (_SIZE_HELP + ", or a share of the memory the process may use such as '80%'"
                   " (of the cgroup limit, else of physical memory)")


@dataclass(frozen=True)
class Share:
    """A share of the memory this process may use (``"80%"`` is ``Share(0.8)``), turned into
    bytes when the guard starts and reads the limit (see :mod:`sherlock_ai.guard.limits`)."""

    fraction: float

    def __str__(self) -> str:
        return f"{self.fraction * 100:g}%"


def parse_size(name: str, value: object, accepted: str = _SIZE_HELP) -> int:
    """``value`` in bytes: a positive int, or a string such as ``"50MB"`` (1024 base, the
    unit of the log lines). Raises ``TypeError``/``ValueError`` naming ``name`` and what is
    ``accepted`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        found = _SIZE.fullmatch(value)
        unit = found.group(2).upper() if found else None
        if found is None or unit not in _UNITS:
            raise ValueError(f"{name} must be {accepted}, got {value!r}")
        size = int(float(found.group(1)) * (1 << _UNITS[unit]))
    if size <= 0:
        raise ValueError(f"{name} must be more than 0 bytes, got {value!r}")
    return size


def check_rss_limit(value: object) -> Union[int, Share, None]:
    """``rss_limit``: ``None`` (off), bytes or a size string, or a share such as ``"80%"``."""
    if value is None or isinstance(value, Share):
        return value
    if isinstance(value, str) and "%" in value:
        found = _SHARE.fullmatch(value)
        fraction = float(found.group(1)) / 100 if found else 0.0
        if not 0 < fraction <= 1:
            raise ValueError(f"rss_limit as a share must be a percentage in (0%, 100%], such as "
                             f"'80%', got {value!r}")
        return Share(fraction)
    return parse_size("rss_limit", value, _RSS_LIMIT_HELP)


def check_on_rss_limit(action: object, rss_limit: object) -> str:
    """``on_rss_limit``: one of :data:`ACTIONS`; anything but the default needs ``rss_limit``."""
    if action not in ACTIONS:
        raise ValueError(f"on_rss_limit must be one of {', '.join(map(repr, ACTIONS))}, "
                         f"got {action!r}")
    if action != "log" and rss_limit is None:
        raise ValueError(f"on_rss_limit={action!r} needs rss_limit (bytes, '800MB' or '80%')")
    return action


def check_shed_timeout(value: object) -> Optional[float]:
    """``shed_timeout``: seconds (more than 0) a worker may shed before it gives up (recycled,
    or failing its health checks), or ``None`` to shed until RSS is back under, however long.
    Only ``on_rss_limit="shed"`` reads it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or value == float("inf"):
        raise ValueError(
            "shed_timeout must be a number of seconds more than 0 (how long a worker may shed "
            "before it is recycled, or fails its health checks where nothing would replace "
            f"it), or None to shed until RSS is back under, got {value!r}")
    return float(value)


def check_memory_budget(value: object) -> Union[int, Mapping[str, int], None]:
    """``memory_budget``: ``None`` (off), bytes or a size string for every route, or a mapping of
    route templates (``"/export"``, or ``"POST /export"`` for one method) to budgets; a mapping
    is kept read-only with its budgets in bytes."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        budgets = {}
        for route, budget in value.items():
            if not isinstance(route, str) or not _is_route_key(route):
                raise ValueError(
                    "memory_budget keys must be route templates such as '/export' or "
                    f"'POST /export', got {route!r}")
            budgets[route] = parse_size(f"memory_budget[{route!r}]", budget)
        return MappingProxyType(budgets)
    return parse_size("memory_budget", value)


def _is_route_key(route: str) -> bool:
    method, space, path = route.partition(" ")
    template = path if space else method
    if space and not (method.isalpha() and method.isupper()):
        return False
    return template.startswith("/") and template == template.strip() and len(template) <= 200


def budget_for(budgets: Union[int, Mapping[str, int]], name: str, route: Optional[str]) -> Any:
    """The budget of a request named ``"{METHOD} {route}"``: the one number, or the mapping's
    entry for its name, else for its route; ``None`` when the mapping names neither."""
    if isinstance(budgets, int):
        return budgets
    found = budgets.get(name)
    if found is None and route is not None:
        found = budgets.get(route)
    return found
