"""Logging set-up: console and rotating files, text or JSON, request ids on every line."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from ..parameters import check_level
from . import direct
from .direct import DirectHandler
from .lines import MONITORING_LOGGER, PERFORMANCE_LOGGER
from .records import RequestIdFilter, install_request_id_factory

DEFAULT_FORMAT = "%(asctime)s - %(request_id)s - %(name)s - %(levelname)s - %(message)s"
DEFAULT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass
class LogFileConfig:
    """One rotating log file.

    ``filename`` without a suffix gets ``.log`` (text) or ``.jsonl`` (JSON). ``loggers`` names
    the loggers it collects; empty means the root logger, i.e. every record.
    """

    filename: str
    level: Union[str, int] = "INFO"
    max_bytes: int = 10 * 1024 * 1024
    backup_count: int = 5
    enabled: bool = True
    loggers: Tuple[str, ...] = ()


def _default_files() -> Dict[str, LogFileConfig]:
    return {
        "app": LogFileConfig("app"),
        "errors": LogFileConfig("errors", level="ERROR"),
        "monitoring": LogFileConfig("monitoring", loggers=(MONITORING_LOGGER,)),
        "performance": LogFileConfig("performance", loggers=(PERFORMANCE_LOGGER,)),
    }


@dataclass
class LoggingConfig:
    """Where and how sherlock_ai writes logs. ``log_format_type`` is ``"log"`` or ``"json"``."""

    logs_dir: Union[str, Path] = "logs"
    log_format_type: str = "log"
    console_enabled: bool = True
    console_level: Union[str, int] = "INFO"
    root_level: Union[str, int] = "INFO"
    log_format: str = DEFAULT_FORMAT
    date_format: str = DEFAULT_DATE_FORMAT
    log_files: Dict[str, LogFileConfig] = field(default_factory=_default_files)


class _TextFormatter(logging.Formatter):
    """``logging.Formatter`` that renders the time stamp once per second, not per record."""

    def __init__(self, fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self._second: Tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        if datefmt is not None and datefmt != self.datefmt or "%f" in (self.datefmt or "%f"):
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime(self.datefmt, self.converter(record.created)))
            self._second = cached
        return cached[1]


class _Console(DirectHandler, logging.StreamHandler):
    """The set-up's console (stderr); :meth:`write` is the direct path's ``emit``."""

    def write(self, text: str) -> None:
        """Write and flush ``text`` (whole lines); a failure is reported as ``emit``'s is."""
        with self.lock:
            try:
                stream = self.stream
                stream.write(text)
                stream.flush()
            except RecursionError:
                raise
            except Exception:  # noqa: BLE001 - reported by handleError, never raised
                self.handleError(logging.makeLogRecord({"msg": text.rstrip("\n")}))


class _FormatOnce(logging.Formatter):
    """Shares one formatted text between sherlock_ai's handlers: a record that goes to the
    console, app.log and monitoring.log is formatted once, not three times."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner
        # The record is held, so a new record cannot reuse its identity.
        self._last: Tuple[Optional[logging.LogRecord], str] = (None, "")

    def format(self, record: logging.LogRecord) -> str:
        last = self._last
        if last[0] is record:
            return last[1]
        text = self.inner.format(record)
        self._last = (record, text)
        return text


_setup_lock = threading.Lock()
_installed: List[Tuple[logging.Logger, logging.Handler]] = []
_undo: List[Callable[[], None]] = []


def _remove_installed() -> None:
    while _undo:
        _undo.pop()()
    while _installed:
        logger, handler = _installed.pop()
        logger.removeHandler(handler)
        try:
            handler.close()
        except (OSError, ValueError) as exc:
            # The final flush of a file on a full disk fails; the records were reported lost.
            sys.stderr.write(f"sherlock_ai: closing a log handler failed ({exc})\n")


class SherlockAI:
    """Apply a :class:`LoggingConfig`. ``setup()`` is idempotent: it replaces the handlers an
    earlier set-up added instead of adding more."""

    def __init__(self, config: Optional[LoggingConfig] = None) -> None:
        self.config = config if config is not None else LoggingConfig()
        if self.config.log_format_type not in ("log", "json"):
            raise ValueError(
                f"log_format_type must be 'log' or 'json', got {self.config.log_format_type!r}"
            )
        self._console_level = check_level(self.config.console_level)
        self._root_level = check_level(self.config.root_level)
        self._file_levels = {k: check_level(f.level) for k, f in self.config.log_files.items()}
        self.log_files: Dict[str, Path] = {}
        self.errors: List[str] = []

    def _formatter(self) -> logging.Formatter:
        if self.config.log_format_type == "json":
            from .json_lines import JsonFormatter

            return _FormatOnce(JsonFormatter())
        return _FormatOnce(_TextFormatter(self.config.log_format, self.config.date_format))

    def _path(self, file: LogFileConfig) -> Path:
        path = Path(self.config.logs_dir) / file.filename
        if not path.suffix:
            path = path.with_suffix(".jsonl" if self.config.log_format_type == "json" else ".log")
        return path

    def setup(self) -> SherlockAI:
        """Install the handlers. A log folder or file that cannot be written is reported on
        stderr and in ``self.errors`` and left out; the console then stays on, so no line is
        lost."""
        install_request_id_factory()
        formatter = self._formatter()
        request_ids = RequestIdFilter()
        every_record: List[logging.Handler] = []  # the files that collect every record
        with _setup_lock:
            _remove_installed()
            self.log_files, self.errors = {}, []
            root = logging.getLogger()
            root.setLevel(self._root_level)
            files = {k: f for k, f in self.config.log_files.items() if f.enabled}
            if files:
                try:
                    os.makedirs(self.config.logs_dir, exist_ok=True)
                except OSError as exc:
                    self.errors.append(f"cannot create {self.config.logs_dir}: {exc}")
                    files = {}
            if files:
                from .files import SafeRotatingFileHandler
            for key, file in files.items():
                path = self._path(file)
                try:
                    handler = SafeRotatingFileHandler(
                        path, maxBytes=file.max_bytes, backupCount=file.backup_count,
                        encoding="utf-8",
                    )
                except OSError as exc:
                    self.errors.append(f"cannot open {path}: {exc}")
                    continue
                handler.setLevel(self._file_levels[key])
                self._attach(handler, formatter, request_ids, file.loggers)
                self.log_files[key] = path
                if not file.loggers:
                    every_record.append(handler)
            from .server_loggers import join_servers, root_console_with_ids

            # A server's console that already shows ids (gunicorn_logconfig_dict's) prints
            # the app's lines; a second console would print each of them twice.
            if (self.config.console_enabled and root_console_with_ids(root) is None
                    or self.errors):
                console = _Console(sys.stderr)
                console.setLevel(self._console_level)
                self._attach(console, formatter, request_ids, ())
            _undo.extend(join_servers(every_record, request_ids))
            direct.changed()
        for error in self.errors:
            sys.stderr.write(f"sherlock_ai: {error}; logging to the console instead\n")
        return self

    @staticmethod
    def _attach(handler, formatter, request_ids, logger_names) -> None:
        handler.setFormatter(formatter)
        handler.addFilter(request_ids)
        setattr(handler, direct.MARK, (formatter, request_ids))
        for name in logger_names or ("",):
            logger = logging.getLogger(name or None)
            logger.addHandler(handler)
            _installed.append((logger, handler))

    @staticmethod
    def cleanup() -> None:
        """Remove and close every handler that sherlock_ai's set-up added."""
        with _setup_lock:
            _remove_installed()
            direct.changed()


def sherlock_ai(config: Optional[LoggingConfig] = None) -> SherlockAI:
    """Set up logging with ``config`` (defaults: ``logs/``, text lines, console on)."""
    return SherlockAI(config).setup()


def get_logger(name: Optional[str] = None) -> logging.Logger:
    """A standard logger; after set-up its lines carry the current request id."""
    return logging.getLogger(name)
