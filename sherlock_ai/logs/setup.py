"""Logging set-up: console and rotating files, text or JSON, request ids on every line."""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, TextIO, Tuple, Union

from ..parameters import check_level
from . import writer
from .lines import MONITORING_LOGGER, PERFORMANCE_LOGGER
from .records import RequestIdFilter, install_request_id_factory
from .render import DEFAULT_DATE_FORMAT, DEFAULT_FORMAT, TextFormatter


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
    """Where and how sherlock_ai writes logs. ``log_format_type`` is ``"log"`` or ``"json"``.

    ``pass_to_logging``: whether sherlock_ai's own lines (MEMORY, PERFORMANCE, RESOURCES,
    LEAK SUSPECT, the memory guard's, WORKER DIED), written to its files and console
    directly, are also handed to ``logging`` as records, for handlers that are not the
    set-up's (a log shipper, Sentry, a test's capture). ``None`` (the default) decides when
    the set-up runs: yes when such a handler is then on the root logger, ``MonitoringLogger``
    or ``PerformanceLogger``.
    """

    logs_dir: Union[str, Path] = "logs"
    log_format_type: str = "log"
    console_enabled: bool = True
    console_level: Union[str, int] = "INFO"
    root_level: Union[str, int] = "INFO"
    log_format: str = DEFAULT_FORMAT
    date_format: str = DEFAULT_DATE_FORMAT
    log_files: Dict[str, LogFileConfig] = field(default_factory=_default_files)
    pass_to_logging: Optional[bool] = None
    #: Where each process keeps its flight record (what a dead worker was serving, see
    #: docs/worker-deaths.md), relative to ``logs_dir`` unless absolute; ``None``: no record.
    worker_records: Optional[Union[str, Path]] = ".workers"


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # subscriptable from Python 3.11
    _StreamHandler = logging.StreamHandler


class _Console(_StreamHandler):
    """The set-up's console (stderr); :meth:`write` is what the line writer calls."""

    # logging's stubs allow None before createLock, which Handler.__init__ calls.
    lock: threading.RLock

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
        #: Whether the set-up hands its lines to ``logging`` too (see ``LoggingConfig``).
        self.pass_to_logging = False

    def _formatter(self) -> logging.Formatter:
        if self.config.log_format_type == "json":
            from .json_lines import JsonFormatter

            return JsonFormatter()
        return TextFormatter(self.config.log_format, self.config.date_format)

    def _path(self, file: LogFileConfig) -> Path:
        path = Path(self.config.logs_dir) / file.filename
        if not path.suffix:
            path = path.with_suffix(".jsonl" if self.config.log_format_type == "json" else ".log")
        return path

    def setup(self) -> SherlockAI:
        """Install the handlers and the line writer. A log folder or file that cannot be
        written is reported on stderr and in ``self.errors`` and left out; the console then
        stays on, so no line is lost.

        The console (stderr) is added unless the root logger already has a console of
        someone else's (``logging.basicConfig``'s, a server's, a ``dictConfig``'s): each line
        is printed once, by that console, to which sherlock_ai's lines are then handed
        (``pass_to_logging``)."""
        install_request_id_factory()
        keep_enabled = writer.keep_enabled
        keep_enabled(logging.getLogger(MONITORING_LOGGER))
        keep_enabled(logging.getLogger(PERFORMANCE_LOGGER))
        inner = self._formatter()
        formatter = _FormatOnce(inner)
        request_ids = RequestIdFilter()
        every_record: List[logging.Handler] = []  # the files that collect every record
        # Per logger of our lines, the set-up's handlers that collect them.
        outputs: Dict[str, List[logging.Handler]] = {MONITORING_LOGGER: [],
                                                     PERFORMANCE_LOGGER: []}
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
                self._attach(handler, formatter, request_ids, file.loggers, outputs)
                self.log_files[key] = path
                if not file.loggers:
                    every_record.append(handler)
            from .server_loggers import join_servers, root_console

            others = _others_handlers()
            console = root_console(root)
            if self.config.console_enabled and console is None or self.errors:
                console = _Console(sys.stderr)
                console.setLevel(self._console_level)
                self._attach(console, formatter, request_ids, (), outputs)
            pass_to_logging = self.config.pass_to_logging
            if pass_to_logging is None:
                pass_to_logging = bool(others)
            self.pass_to_logging = pass_to_logging
            _undo.extend(join_servers(every_record, request_ids))
            writer.use(writer.ToFiles(
                {name: tuple(handlers) for name, handlers in outputs.items()}, inner,
                self.config.log_format_type == "json", pass_to_logging,
                frozenset(handler for _, handler in _installed)))
        for error in self.errors:
            sys.stderr.write(f"sherlock_ai: {error}; logging to the console instead\n")
        from ..deaths import recorder

        records = self.config.worker_records
        recorder.configure(None if records is None else Path(self.config.logs_dir) / records)
        return self

    @staticmethod
    def _attach(handler: logging.Handler, formatter: logging.Formatter,
                request_ids: RequestIdFilter, logger_names: Tuple[str, ...],
                outputs: Dict[str, List[logging.Handler]]) -> None:
        handler.setFormatter(formatter)
        handler.addFilter(request_ids)
        for name in logger_names or ("",):
            logger = logging.getLogger(name or None)
            logger.addHandler(handler)
            _installed.append((logger, handler))
            for ours, collected in outputs.items():
                if name in ("", ours) and handler not in collected:
                    collected.append(handler)

    @staticmethod
    def cleanup() -> None:
        """Remove and close every handler that sherlock_ai's set-up added; lines go to
        ``logging`` again."""
        with _setup_lock:
            _remove_installed()
            writer.use(writer.ToLogging())
        from ..deaths import recorder

        recorder.close()


def _others_handlers() -> List[logging.Handler]:
    """The handlers on the root logger and on our loggers that are not the set-up's."""
    ours = {handler for _, handler in _installed}
    return [handler for name in ("", MONITORING_LOGGER, PERFORMANCE_LOGGER)
            for handler in logging.getLogger(name or None).handlers if handler not in ours]


def restore_files(also: Optional[logging.Logger] = None) -> int:
    """Put the set-up's log files back on the loggers they were attached to where something
    removed them (Celery's worker empties the root logger's handlers when it starts,
    ``worker_hijack_root_logger``). The console is left out: the code that replaced the
    handlers brought its own. ``also``: a logger that does not propagate to the root (Celery's
    task logger) gets the files that collect every record too. Returns how many handlers were
    added."""
    added = 0
    with _setup_lock:
        root = logging.getLogger()
        for logger, handler in list(_installed):
            if isinstance(handler, _Console):
                continue
            if handler not in logger.handlers:
                logger.addHandler(handler)
                added += 1
            if also is not None and logger is root and not also.propagate \
                    and handler not in also.handlers:
                also.addHandler(handler)
                _installed.append((also, handler))
                added += 1
    return added


def sherlock_ai(config: Optional[LoggingConfig] = None) -> SherlockAI:
    """Set up logging with ``config`` (defaults: ``logs/``, text lines, console on)."""
    return SherlockAI(config).setup()


def get_logger(name: Optional[str] = None) -> logging.Logger:
    """A standard logger; after set-up its lines carry the current request id."""
    return logging.getLogger(name)
