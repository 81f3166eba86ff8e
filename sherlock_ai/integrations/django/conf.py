"""``settings.SHERLOCK_AI``: one dict with the request options of the other integrations and the
logging set-up's fields, checked once (:func:`read_settings`)."""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from django.core.exceptions import ImproperlyConfigured

from ...logs.setup import LogFileConfig, LoggingConfig, SherlockAI
from ..options import RequestOptions

#: The keys of ``SHERLOCK_AI`` that are request options (``RequestOptions``' fields).
OPTION_KEYS = tuple(f.name for f in dataclasses.fields(RequestOptions))
#: The keys that are the logging set-up's (``LoggingConfig``'s fields).
LOGGING_KEYS = tuple(f.name for f in dataclasses.fields(LoggingConfig))
#: ``False``: sherlock_ai installs no handler; ``LOGGING`` decides where its lines go.
CONFIGURE_LOGGING = "configure_logging"

_EXAMPLE = ('SHERLOCK_AI = {"leak_detection": True, "memory_budget": "50MB", '
            '"logs_dir": BASE_DIR / "logs"}')


@dataclass(frozen=True)
class SherlockSettings:
    """The checked ``SHERLOCK_AI``: the request options, and the logging set-up to apply at
    start-up (``None`` with ``"configure_logging": False``)."""

    options: RequestOptions
    logging: Optional[LoggingConfig]


def read_settings(value: object) -> SherlockSettings:
    """Check ``settings.SHERLOCK_AI`` (``None`` when the project has none: the defaults);
    ``ImproperlyConfigured`` with what to write instead."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            f"settings.SHERLOCK_AI must be a dict, for example {_EXAMPLE}; got {value!r}")
    _check_keys(value)
    configure = value.get(CONFIGURE_LOGGING, True)
    if not isinstance(configure, bool):
        raise ImproperlyConfigured(
            f"settings.SHERLOCK_AI['{CONFIGURE_LOGGING}'] must be True or False, got "
            f"{configure!r}")
    logging_values = {k: v for k, v in value.items() if k in LOGGING_KEYS}
    if not configure and logging_values:
        raise ImproperlyConfigured(
            f"settings.SHERLOCK_AI sets {', '.join(sorted(logging_values))} and "
            f"'{CONFIGURE_LOGGING}': False: sherlock_ai then sets up no log file, so these "
            "have no effect; remove them, or remove 'configure_logging'")
    try:
        options = RequestOptions.from_kwargs({k: v for k, v in value.items()
                                              if k in OPTION_KEYS})
        config = _logging_config(logging_values) if configure else None
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"settings.SHERLOCK_AI: {exc}") from exc
    return SherlockSettings(options, config)


def _check_keys(value: Mapping[Any, Any]) -> None:
    known = set(OPTION_KEYS) | set(LOGGING_KEYS) | {CONFIGURE_LOGGING}
    for key in value:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ImproperlyConfigured(
            f"settings.SHERLOCK_AI has an unknown key {key!r}{hint}. Its keys are the request "
            f"options {', '.join(OPTION_KEYS)}; the logging set-up's "
            f"{', '.join(LOGGING_KEYS)}; and {CONFIGURE_LOGGING}")


def _logging_config(values: Dict[str, Any]) -> LoggingConfig:
    logs_dir = values.get("logs_dir", "logs")
    if not isinstance(logs_dir, (str, os.PathLike)):
        raise TypeError(f"logs_dir must be a folder path (str or Path), got {logs_dir!r}")
    for name in ("log_format", "date_format"):
        if name in values and not isinstance(values[name], str):
            raise TypeError(f"{name} must be a str, got {values[name]!r}")
    if "console_enabled" in values and not isinstance(values["console_enabled"], bool):
        raise TypeError(f"console_enabled must be True or False, got "
                        f"{values['console_enabled']!r}")
    if "log_files" in values:
        values = {**values, "log_files": _log_files(values["log_files"])}
    config = LoggingConfig(**values)
    SherlockAI(config)  # checks the format type and the levels
    return config


def _log_files(files: object) -> Dict[str, LogFileConfig]:
    """The default files updated by ``files``: a dict of fields changes those fields of the
    default file of that key (``{"app": {"enabled": False}}``) or makes a new file; a
    ``LogFileConfig`` replaces it."""
    if not isinstance(files, Mapping):
        raise TypeError("log_files must be a dict of file keys to LogFileConfig(...) or dicts "
                        "of its fields, e.g. {'monitoring': {'max_bytes': 50_000_000}}; "
                        f"got {files!r}")
    checked = dict(LoggingConfig().log_files)
    fields: List[str] = [f.name for f in dataclasses.fields(LogFileConfig)]
    for key, file in files.items():
        if isinstance(file, LogFileConfig):
            checked[key] = file
        elif isinstance(file, Mapping):
            unknown = sorted(set(file) - set(fields))
            if unknown:
                raise TypeError(f"log_files[{key!r}] has unknown field(s) {', '.join(unknown)}; "
                                f"accepted: {', '.join(fields)}")
            default = checked.get(key)
            checked[key] = (LogFileConfig(**{"filename": str(key), **file}) if default is None
                            else dataclasses.replace(default, **file))
        else:
            raise TypeError(f"log_files[{key!r}] must be a LogFileConfig or a dict of its "
                            f"fields, got {file!r}")
    return checked
