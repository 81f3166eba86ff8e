"""FastAPI users find the ASGI integration here too: FastAPI apps are Starlette apps.

``instrument_app(app)`` (recommended: the 500 of an unhandled exception carries the id) or
``app.add_middleware(SherlockMiddleware)``; see :mod:`sherlock_ai.integrations.asgi`.
"""

from __future__ import annotations

from .asgi import SherlockMiddleware, instrument_app

__all__ = ["SherlockMiddleware", "instrument_app"]
