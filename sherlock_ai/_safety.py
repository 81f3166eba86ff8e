"""The old name of :mod:`sherlock_ai.safety` (kept so that existing imports keep working)."""

from .safety import guarded, guarded_call, report_internal_error

__all__ = ["guarded", "guarded_call", "report_internal_error"]
