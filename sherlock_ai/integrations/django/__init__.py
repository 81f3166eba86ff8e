"""Django: request ids, one MEMORY line per request named by its URL pattern, the leak watch and
the memory guard, set up the Django way.

In ``settings.py``::

    INSTALLED_APPS = [..., "sherlock_ai.integrations.django"]
    MIDDLEWARE = ["sherlock_ai.integrations.django.SherlockMiddleware", ...]
    SHERLOCK_AI = {"leak_detection": True, "logs_dir": BASE_DIR / "logs"}

``SHERLOCK_AI`` takes the request options of the other integrations
(:class:`~sherlock_ai.integrations.RequestOptions`) and the fields of
:class:`~sherlock_ai.LoggingConfig` under the same names; the app checks it once at start-up
(``ImproperlyConfigured`` for a wrong name or value) and sets up sherlock_ai's log files after
Django applied ``LOGGING``. :class:`RequestIdFilter` puts the id on the lines of Django's own
loggers (``django.request``, ``django.server``): reference it from ``LOGGING`` as
``"sherlock_ai.integrations.django.RequestIdFilter"``.

Django is imported only by this package; its names are loaded on first use, so ``LOGGING`` can
reference the filter before the apps are loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .log_filters import RequestIdFilter
    from .middleware import SherlockMiddleware

_LAZY = {"SherlockMiddleware": "middleware", "RequestIdFilter": "log_filters"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["RequestIdFilter", "SherlockMiddleware"]
