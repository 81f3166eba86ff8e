"""The rotating log file of sherlock_ai's logging set-up (loaded when a set-up opens files)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from typing import Optional, Tuple


class SafeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file that reports a write failure (full disk, removed folder) once, keeps
    the application running, and says when writing works again.

    At most once every :attr:`check_interval` seconds it also checks that its path still
    names the file it writes: when the file (or its folder) was removed, or renamed away by
    an outside rotation such as logrotate's, it says so on stderr and opens the path anew,
    recreating the folder. Lines written in between went to the old file.
    """

    #: Seconds between two checks of the path (monotonic clock; one ``stat`` per check).
    check_interval = 1.0

    def __init__(self, *args, **kwargs) -> None:
        self._identity: Optional[Tuple[int, int]] = None
        super().__init__(*args, **kwargs)
        self._failed_now = False
        self._lost = 0
        # Checked once: the base class stats the path twice per record to find out.
        self._regular = os.path.isfile(self.baseFilename)
        self._next_check = time.monotonic() + self.check_interval

    def _open(self):
        # The folder may have been removed since: recreate it rather than lose every line.
        folder = os.path.dirname(self.baseFilename)
        if folder:
            os.makedirs(folder, exist_ok=True)
        stream = super()._open()
        status = os.fstat(stream.fileno())
        self._identity = (status.st_dev, status.st_ino)
        return stream

    def _path_moved(self) -> bool:
        """Whether the path no longer names the open file (removed, or renamed and replaced)."""
        try:
            status = os.stat(self.baseFilename)
        except FileNotFoundError:
            return True
        return (status.st_dev, status.st_ino) != self._identity

    def emit(self, record: logging.LogRecord) -> None:
        # What RotatingFileHandler, FileHandler and StreamHandler do in their three emit()
        # methods and flush(), in one: this runs for every line, under the handler's lock.
        self._failed_now = False
        try:
            text = self.format(record) + self.terminator
            stream = self.stream
            if stream is not None and self._regular:
                now = time.monotonic()
                if now >= self._next_check:
                    self._next_check = now + self.check_interval
                    if self._path_moved():
                        self._close_moved(stream)
                        stream = None
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

    def _close_moved(self, stream) -> None:
        self.stream = None
        try:
            stream.close()
        except OSError:  # the old file's last flush: its folder or disk may be gone
            pass
        try:
            sys.stderr.write(
                f"sherlock_ai: {self.baseFilename} was removed or moved away (by log rotation?); "
                "writing to it anew\n"
            )
        except Exception:  # noqa: BLE001 - stderr itself may be gone
            pass

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
