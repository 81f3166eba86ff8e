"""The labels the exporters give a measured request's metrics."""

from __future__ import annotations

from typing import Optional, Set

#: The task label of the runs of tasks beyond the first :data:`TASKS_LIMIT` names.
OTHER_TASKS = "<other tasks>"
TASKS_LIMIT = 1000


def status_class(status: Optional[int]) -> str:
    """``"2xx"`` ... ``"5xx"`` for metrics labels; ``"none"`` when no response started."""
    if isinstance(status, int) and 100 <= status <= 599:
        return f"{status // 100}xx"
    return "none"


class TaskNames:
    """The ``task`` label of each task name: the name for the first :data:`TASKS_LIMIT`
    names seen, :data:`OTHER_TASKS` for the rest (a metric's series stay bounded)."""

    def __init__(self) -> None:
        self._known: Set[str] = set()

    def label(self, task: str) -> str:
        if task not in self._known:
            if len(self._known) >= TASKS_LIMIT:
                return OTHER_TASKS
            self._known.add(task)
        return task
