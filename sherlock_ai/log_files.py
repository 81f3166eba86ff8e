"""The rotating log file of sherlock_ai's logging set-up (loaded when a set-up opens files)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys


class SafeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file that reports a write failure (full disk, removed folder) once, keeps
    the application running, and says when writing works again."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._failed_now = False
        self._lost = 0
        # Checked once: the base class stats the path twice per record to find out.
        self._regular = os.path.isfile(self.baseFilename)

    def emit(self, record: logging.LogRecord) -> None:
        # What RotatingFileHandler, FileHandler and StreamHandler do in their three emit()
        # methods and flush(), in one: this runs for every line, under the handler's lock.
        self._failed_now = False
        try:
            text = self.format(record) + self.terminator
            stream = self.stream
            if stream is None:
                stream = self.stream = self._open()
            if self.maxBytes > 0 and self._regular and self._full(stream.tell(), len(text)):
                self.doRollover()
                stream = self.stream = self.stream or self._open()
            stream.write(text)
            stream.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - reported by handleError, never raised
            self.handleError(record)
        if self._lost and not self._failed_now:
            sys.stderr.write(
                f"sherlock_ai: writing {self.baseFilename} works again; "
                f"{self._lost} records were lost\n"
            )
            self._lost = 0

    def _full(self, size: int, adding: int) -> bool:
        # An empty file is never rotated: one record longer than max_bytes would otherwise
        # push every backup out with empty files.
        return size > 0 and size + adding >= self.maxBytes

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed_now = True
        self._lost += 1
        if self._lost == 1:
            exc = sys.exc_info()[1]
            try:
                sys.stderr.write(
                    f"sherlock_ai: cannot write {self.baseFilename} ({exc}); "
                    "records are dropped until it works again\n"
                )
            except Exception:  # noqa: BLE001
                pass
