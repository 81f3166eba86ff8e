"""Checks of the parameters every part takes (levels, durations, flags, names, keyword
sets), done once at decoration or set-up time."""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any, Mapping, Type, TypeVar, Union

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


def check_frames(frames: object) -> int:
    """A positive number of traceback frames."""
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ValueError(f"frames must be a positive int, got {frames!r}")
    return frames
