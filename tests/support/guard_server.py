"""A Flask app and a Starlette app for the memory guard's server tests, set up from the
environment: ``GUARD_MARGIN`` (rss_limit is the RSS at import plus this many bytes),
``GUARD_ACTION`` (on_rss_limit), ``GUARD_SHED_TIMEOUT`` (shed_timeout), ``GUARD_BUDGETS``
(memory_budget, as JSON) and ``GUARD_LOG`` (the file every process appends its
MonitoringLogger lines to, with its pid).

Routes: ``/grow`` keeps 8 MB more (anonymous memory, touched page by page, so RSS grows by
that much) and answers the worker's pid; ``/release`` frees all of it (unmapped at once, so
RSS falls); ``/pid`` and ``/health`` only answer the pid (``/health`` and ``/release`` are
excluded paths).
"""

from __future__ import annotations

import json
import logging
import os

from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from resident import touched
from sherlock_ai.engine.rss import current_rss
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.integrations.flask import Sherlock

GROWTH = 8 << 20
_kept: list = []

handler = logging.FileHandler(os.environ["GUARD_LOG"])
handler.setFormatter(logging.Formatter("%(process)d %(levelname)s %(message)s"))
monitoring = logging.getLogger("MonitoringLogger")
monitoring.addHandler(handler)
monitoring.setLevel(logging.INFO)
monitoring.propagate = False

OPTIONS = {
    "rss_limit": current_rss() + int(os.environ.get("GUARD_MARGIN", str(40 << 20))),
    "on_rss_limit": os.environ.get("GUARD_ACTION", "recycle"),
    "exclude_paths": ["/health", "/release"],
    "shed_timeout": float(os.environ.get("GUARD_SHED_TIMEOUT", "60")),
    "memory_budget": json.loads(os.environ.get("GUARD_BUDGETS", "null")),
}


def grow() -> str:
    _kept.append(touched(GROWTH))
    return str(os.getpid())


def release() -> str:
    while _kept:
        _kept.pop().close()
    return str(os.getpid())


def pid() -> str:
    return str(os.getpid())


flask_app = Flask(__name__)
flask_app.add_url_rule("/grow", "grow", grow)
flask_app.add_url_rule("/release", "release", release)
flask_app.add_url_rule("/pid", "pid", pid)
flask_app.add_url_rule("/health", "health", pid)
Sherlock(flask_app, **OPTIONS)


def _text(view):
    async def endpoint(request):
        return PlainTextResponse(view())

    return endpoint


asgi_app = instrument_app(Starlette(routes=[
    Route("/grow", _text(grow)), Route("/release", _text(release)), Route("/pid", _text(pid)),
    Route("/health", _text(pid))]), **OPTIONS)
