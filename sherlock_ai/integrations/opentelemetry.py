"""Moved to :mod:`sherlock_ai.exporters.opentelemetry`; this import path keeps working (it is the
same module object, so attributes set through either path are seen by both)."""

import sys

from ..exporters import opentelemetry as _moved

sys.modules[__name__] = _moved
