"""The one bounded cache of sherlock_ai: a dict of values computed from their keys (log-safe
names, rendered figures, metric children, parsed times) that never holds more than
``limit`` entries, whatever keys an application or a log file brings."""

from __future__ import annotations

from typing import Dict, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: Entries a cache keeps unless told otherwise: the keys that repeat (routes, tasks, figures,
#: files) are far fewer; hostile or unbounded keys (raw paths, ids) must not grow memory.
DEFAULT_LIMIT = 4096


class BoundedCache(Dict[K, V]):
    """A dict read as usual (``cache.get(key)``, a plain dict lookup) and filled through
    :meth:`keep`, which empties it first when it holds ``limit`` entries. Emptying, rather
    than refusing new keys, lets the keys in use now come back after a burst of others; a
    value must be one its key computes again alike. Safe to share between threads: a reader
    may miss an entry being replaced and computes it again."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__()
        self.limit = limit

    def keep(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` and return it."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
