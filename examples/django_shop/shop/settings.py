"""A minimal Django project measured by sherlock_ai: request ids, one MEMORY line per request,
the leak watch and a memory budget. Logs go to ``logs/`` beside this project (``SHOP_LOGS_DIR``
to change it)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["sherlock_ai.integrations.django"]
MIDDLEWARE = [
    "sherlock_ai.integrations.django.SherlockMiddleware",  # first: it measures the rest
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
DATABASES = {}
USE_TZ = True

SHERLOCK_AI = {
    "leak_detection": True,
    "memory_budget": {"/export/": "20MB"},
    "exclude_paths": ["/health/"],
    "logs_dir": os.environ.get("SHOP_LOGS_DIR", BASE_DIR / "logs"),
}

# Django's own lines with the request id: the filter on django.request (errors, 404s) and on
# django.server (runserver's access lines).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": True,
    "filters": {"request_id": {"()": "sherlock_ai.integrations.django.RequestIdFilter"}},
    "formatters": {"with_id": {
        "format": "%(asctime)s - %(request_id)s - %(name)s - %(levelname)s - %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "with_id"}},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "WARNING",
                           "filters": ["request_id"], "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO",
                          "filters": ["request_id"], "propagate": False},
        "shop": {"level": "INFO"},
    },
}
