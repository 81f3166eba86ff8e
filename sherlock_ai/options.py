"""Validation of user parameters, done once at decoration or set-up time."""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from typing import Any, Callable, FrozenSet, Iterable, Mapping, Type, TypeVar, Union

T = TypeVar("T")


def check_level(log_level: Union[str, int]) -> int:
    """A logging level name (``"INFO"``, ``"debug"``) or number, as a number."""
    if isinstance(log_level, bool):
        raise TypeError("log_level must be a level name such as 'INFO' or a logging level int")
    if isinstance(log_level, int):
        if log_level < 0:
            raise ValueError(f"log_level must be >= 0, got {log_level}")
        return log_level
    if isinstance(log_level, str):
        level = logging.getLevelName(log_level.strip().upper())
        if isinstance(level, int):
            return level
    raise ValueError(
        f"unknown log_level {log_level!r}: use DEBUG, INFO, WARNING, ERROR, CRITICAL "
        "or a logging level int"
    )


def check_min_duration(min_duration: float) -> float:
    """A non-negative number of seconds."""
    if isinstance(min_duration, bool) or not isinstance(min_duration, (int, float)):
        raise TypeError(f"min_duration must be a number of seconds, got {min_duration!r}")
    if not min_duration >= 0:  # also rejects NaN
        raise ValueError(f"min_duration must be >= 0 seconds, got {min_duration!r}")
    return float(min_duration)


def check_flag(name: str, value: object) -> bool:
    """A real bool, so that a misspelt option does not silently mean True."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_name(name: object) -> str:
    """A non-empty tracker name."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    return name


def from_keywords(cls: Type[T], values: Mapping[str, Any], what: str) -> T:
    """The dataclass ``cls`` built from keyword ``values``, refusing unknown names with a
    message that lists the accepted ones (``what`` names them, e.g. ``"option(s)"``)."""
    check_known(cls, values, what)
    return cls(**values)


def check_known(cls: Type[Any], values: Mapping[str, Any], what: str) -> None:
    """Refuse names of ``values`` that are not fields of the dataclass ``cls``, with a message
    that lists the accepted ones (``what`` names them, e.g. ``"option(s)"``)."""
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(accepted))
    if unknown:
        raise TypeError(f"unknown {what} {', '.join(unknown)}; accepted: {', '.join(accepted)}")


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")


def check_header_name(name: object) -> str:
    """An HTTP header name (an RFC 9110 token of at most 128 characters)."""
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValueError(
            "header_name must be an HTTP header name such as 'X-Request-ID' (1 to 128 "
            f"letters, digits or !#$%&'*+-.^_`|~), got {name!r}"
        )
    return name


def check_id_generator(generator: object) -> Callable[[], str]:
    """A callable that makes request ids."""
    if not callable(generator):
        raise TypeError(
            "id_generator must be a callable taking no arguments and returning a str id, "
            f"got {generator!r}"
        )
    return generator  # type: ignore[return-value]


def check_exclude_paths(paths: object) -> FrozenSet[str]:
    """Exact paths (``"/health"``) and prefixes ending in ``/`` (``"/static/"``), as a set."""
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
        raise TypeError(
            "exclude_paths must be an iterable of paths such as ['/health', '/static/'], "
            f"got {paths!r}"
        )
    checked = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"each excluded path must be a str starting with '/', got {path!r}")
        if path == "/":
            raise ValueError(
                "exclude_paths entry '/' would be a prefix of every path (entries ending in '/' "
                "are prefixes); to skip all requests, do not install the middleware"
            )
        if any(c in path for c in "*?[]"):
            raise ValueError(
                f"exclude_paths takes exact paths ('/health') and prefixes ending in '/' "
                f"('/static/'), not patterns: got {path!r}"
            )
        checked.append(path)
    return frozenset(checked)


def check_frames(frames: object) -> int:
    """A positive number of traceback frames."""
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ValueError(f"frames must be a positive int, got {frames!r}")
    return frames


def check_leak_settings(settings: object, leak_detection: bool) -> Any:
    """The :class:`~sherlock_ai.LeakWatchSettings` of a mapping of settings (or the settings
    themselves); ``None`` for ``None``. Only valid together with ``leak_detection=True``."""
    if settings is None:
        return None
    from .leaks import LeakWatchSettings  # imported only by services that watch for leaks

    if not isinstance(settings, (Mapping, LeakWatchSettings)):
        raise TypeError(
            "leak_settings must be a mapping of LeakWatch settings such as "
            f"{{'trace_share': 0.05}} (or a LeakWatchSettings), got {settings!r}"
        )
    if not leak_detection:
        raise ValueError("leak_settings only apply with leak_detection=True")
    if isinstance(settings, LeakWatchSettings):
        return settings
    return LeakWatchSettings.from_kwargs(dict(settings))
