"""The app ``sherlock_ai.integrations.django``: checks ``settings.SHERLOCK_AI`` and sets up
sherlock_ai's log files once Django has applied ``LOGGING`` (in :meth:`SherlockConfig.ready`)."""

from __future__ import annotations

import logging
import sys
from typing import Any, List, Optional, Tuple

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.signals import got_request_exception, setting_changed

from ...formatting import exception_summary
from ...logs.setup import SherlockAI
from ...safety import internal_errors
from ..keys import ERROR_KEY, REQUEST_ID_KEY
from .conf import SherlockSettings, read_settings
from .middleware import APP, APP_LABEL, MIDDLEWARE_PATH, Serving


class SherlockConfig(AppConfig):  # type: ignore[misc]  # Any: Django ships no type hints
    """Reads ``settings.SHERLOCK_AI`` at start-up (again when a test overrides it)."""

    name = APP
    label = APP_LABEL
    verbose_name = "sherlock_ai"
    #: The checked ``SHERLOCK_AI``.
    checked: Optional[SherlockSettings] = None
    #: What the middleware instances share (see :class:`~.middleware.Serving`).
    serving: Optional[Serving] = None
    #: The logging set-up applied (``None`` with ``"configure_logging": False``).
    logging_setup: Optional[SherlockAI] = None
    # The handlers on the loggers the set-up attaches to (the root, its files' loggers) right
    # after it ran: a handler missing later means LOGGING was applied again.
    _attached: Tuple[Tuple[logging.Logger, logging.Handler], ...] = ()

    def ready(self) -> None:
        self.apply(getattr(settings, "SHERLOCK_AI", None))
        got_request_exception.connect(note_exception, dispatch_uid="sherlock_ai.exception")
        setting_changed.connect(self._setting_changed, dispatch_uid="sherlock_ai.settings")
        checks.register(check_middleware)

    def apply(self, value: object) -> None:
        """Check ``value`` as ``SHERLOCK_AI`` and serve requests with it."""
        checked = read_settings(value)
        self.checked = checked
        self.set_up_logging()
        self.serving = Serving(checked.options)

    def set_up_logging(self) -> None:
        """Install sherlock_ai's log files, unless ``configure_logging`` is off (Django applied
        ``LOGGING`` just before)."""
        if self.checked is None or self.checked.logging is None:
            self.logging_setup, self._attached = None, ()
            return
        config = self.checked.logging
        self.logging_setup = SherlockAI(config).setup()
        names = {name for file in config.log_files.values() for name in file.loggers}
        self._attached = tuple((logger, handler)
                               for logger in map(logging.getLogger, (None, *sorted(names)))
                               for handler in logger.handlers)

    def handler_built(self) -> None:
        """Called when a request handler loads the middleware. ``get_wsgi_application()`` and
        ``get_asgi_application()`` call ``django.setup()``, which applies ``LOGGING`` again
        when it ran before (``runserver``'s own set-up did): a ``LOGGING`` that configures the
        root logger then replaced the handlers of the set-up of :meth:`ready`, and the
        records of other loggers no longer reach ``app.log``. Set up again in that case."""
        if any(handler not in logger.handlers for logger, handler in self._attached):
            self.set_up_logging()

    @property
    def leak_watch(self) -> Any:
        """The :class:`sherlock_ai.LeakWatch` of ``leak_detection``, else ``None``."""
        return None if self.serving is None else self.serving.policy.leak_watch

    def _setting_changed(self, setting: str, value: object = None, **_: Any) -> None:
        if setting == "SHERLOCK_AI":
            self.apply(value)


def note_exception(sender: Any, request: Any = None, **_: Any) -> None:
    """``got_request_exception``: Django is turning an exception into a 500 response; keep its
    summary for the request's line (the first, when the error view fails too)."""
    meta = getattr(request, "META", None)
    if not isinstance(meta, dict) or REQUEST_ID_KEY not in meta or ERROR_KEY in meta:
        return
    exc = sys.exc_info()[1]
    if exc is not None:
        with internal_errors:
            meta[ERROR_KEY] = exception_summary(exc)


def check_middleware(app_configs: Any = None, **_: Any) -> List[checks.CheckMessage]:
    """The system check of ``MIDDLEWARE``: the middleware present, and first."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    hint = f'put "{MIDDLEWARE_PATH}" first in MIDDLEWARE'
    if MIDDLEWARE_PATH not in middleware:
        return [checks.Warning(
            "sherlock_ai's middleware is not in MIDDLEWARE: requests get no id and no MEMORY "
            "line", hint=hint, id="sherlock_ai.W001")]
    if middleware[0] != MIDDLEWARE_PATH:
        return [checks.Warning(
            "sherlock_ai's middleware is not first in MIDDLEWARE: what the middleware before "
            f"it ({middleware[0]}) does and answers is not measured and carries no id",
            hint=hint, id="sherlock_ai.W002")]
    return []
