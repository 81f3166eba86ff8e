"""The memory guard (docs/memory-guard.md): per-request memory budgets and a per-process RSS
limit for the web integrations, built from their options ``memory_budget``, ``rss_limit`` and
``on_rss_limit``; one more consumer of finished requests.

Modules: ``sizes`` (the option values), ``limits`` (cgroup and physical memory, read once),
``budget`` (the per-request check), ``watermark`` (the limit's states), ``supervisor`` (who
replaces a recycled worker), ``events`` (the lines and their fields), ``guard`` (``MemoryGuard``).
"""

from .guard import SHED_BODY, SHED_HEADERS, MemoryGuard
from .limits import MemoryLimit, memory_limit
from .sizes import Share, parse_size

__all__ = ["SHED_BODY", "SHED_HEADERS", "MemoryGuard", "MemoryLimit", "Share", "memory_limit",
           "parse_size"]
