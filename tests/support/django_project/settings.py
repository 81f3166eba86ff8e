"""The Django project of the tests, served by gunicorn, uvicorn and runserver.

Environment: ``DJANGO_PROJECT_LOGS`` (sherlock_ai's log folder) and ``DJANGO_PROJECT_SHERLOCK_AI``
(JSON merged into ``SHERLOCK_AI``), ``DJANGO_PROJECT_ROOT_LOGGING`` (set: ``LOGGING`` configures
the root logger too, with its console). ``LOGGING`` disables every logger that exists when Django
applies it, as many projects' do; this file imports sherlock_ai before that, as a settings file
that configures its log files does.
"""

import json
import os
import runpy
from pathlib import Path

from sherlock_ai import LogFileConfig

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["sherlock_ai.integrations.django"]
MIDDLEWARE = [
    "sherlock_ai.integrations.django.SherlockMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "django_project.urls"
DATABASES = {}
USE_TZ = True
REST_FRAMEWORK = {"DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
                  "UNAUTHENTICATED_USER": None}

SHERLOCK_AI = {
    "logs_dir": os.environ.get("DJANGO_PROJECT_LOGS", str(BASE_DIR / "logs")),
    "log_format_type": "json",
    "console_enabled": False,
    "log_files": {"monitoring": LogFileConfig("monitoring", loggers=("MonitoringLogger",),
                                              max_bytes=50 * 1024 * 1024)},
    **json.loads(os.environ.get("DJANGO_PROJECT_SHERLOCK_AI", "{}")),
}

# The example project's LOGGING, as users copy it: the filter that puts request ids in
# Django's own lines (django.request, django.server) and the project's "shop" logger, named so
# that it stays enabled when LOGGING is applied after the views were imported.
LOGGING = runpy.run_path(
    str(BASE_DIR.parent.parent.parent / "examples" / "django_shop" / "shop" / "settings.py")
)["LOGGING"]
if os.environ.get("DJANGO_PROJECT_ROOT_LOGGING"):
    LOGGING["root"] = {"handlers": ["console"], "level": "INFO"}
