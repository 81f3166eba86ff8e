"""The rotating log file of sherlock_ai's logging set-up (loaded when a set-up opens files)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
import sys
import threading
import time
from typing import Optional, Tuple

from .rotation_lock import RotationLock

_write, _lseek, _SEEK_CUR = os.write, os.lseek, os.SEEK_CUR
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class SafeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file written with one ``os.write`` per whole line on an ``O_APPEND``
    descriptor: no user-space buffer, so each line is in the kernel when ``emit`` (or
    :meth:`write`) returns and a killed process loses none; lines of several processes
    appending to one file never tear.

    Rotation is shared by every process writing the path (see
    :mod:`sherlock_ai.logs.rotation_lock`): one process rotates, under a lock, after checking
    that nobody rotated meanwhile; the others follow the new file at their next line. A file
    may exceed ``maxBytes`` by about one line per writing process. ``backupCount=0`` never
    rotates (as with ``RotatingFileHandler``, whose rollover then keeps the same file).

    It reports a write failure (full disk, removed folder) once, keeps the application
    running, and says when writing works again. At most once every :attr:`check_interval`
    seconds it checks that its path still names the file it writes: when the file (or its
    folder) was removed, or renamed away by an outside rotation such as logrotate's, it says
    so on stderr and opens the path anew, recreating the folder. Lines written in between
    went to the old file.
    """

    #: Seconds between two checks of the path (monotonic clock; one ``stat`` per check).
    check_interval = 1.0
    # logging's stubs allow None for both: the lock before createLock, which
    # Handler.__init__ calls, and an encoding not given, which __init__ never passes.
    lock: threading.RLock
    encoding: str

    def __init__(self, filename: str | os.PathLike[str], maxBytes: int = 0,
                 backupCount: int = 0, encoding: Optional[str] = "utf-8") -> None:
        # delay=True: the base class never opens its text stream; this class writes the fd.
        super().__init__(filename, "a", maxBytes, backupCount, encoding or "utf-8", delay=True)
        self._fd = -1
        self._identity: Optional[Tuple[int, int]] = None
        self._size = 0  # the file's size after this process's last line
        self._lost = 0
        self._rotation: Optional[RotationLock] = None
        self._closed_rotation = False  # closed with a shared rotation: reopen it with the file
        self._generation = 0
        self._next_check = time.monotonic() + self.check_interval
        self._open_fd()
        self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        if self._regular and self.maxBytes > 0 and self.backupCount > 0:
            self._rotation = RotationLock(self.baseFilename)
            self._generation = self._rotation.generation

    def _open_fd(self) -> None:
        # A handler closed by someone else (logging.config.dictConfig closes every handler
        # that exists) still gets sherlock_ai's lines: its shared rotation opens again too.
        if self._closed_rotation:
            self._closed_rotation = False
            self._rotation = RotationLock(self.baseFilename)
            self._generation = self._rotation.generation
        # The folder may have been removed since: recreate it rather than lose every line.
        folder = os.path.dirname(self.baseFilename)
        if folder:
            os.makedirs(folder, exist_ok=True)
        fd = os.open(self.baseFilename, _FLAGS, 0o644)
        old, self._fd = self._fd, fd
        if old >= 0:
            os.close(old)
        status = os.fstat(fd)
        self._identity = (status.st_dev, status.st_ino)
        self._size = status.st_size

    def _path_moved(self) -> bool:
        """Whether the path no longer names the open file (removed, or renamed and replaced)."""
        try:
            status = os.stat(self.baseFilename)
        except FileNotFoundError:
            return True
        return (status.st_dev, status.st_ino) != self._identity

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - reported by handleError, never raised
            self.handleError(record)
            return
        self.write(text)

    def write(self, text: str) -> None:
        """Hand ``text`` (one or more whole lines, ending in a newline) to the kernel in one
        ``os.write``, rotating first when it would fill the file. Never raises: a failure is
        reported once and counted."""
        try:
            data = text.encode(self.encoding)
        except UnicodeError:  # a lone surrogate: this line is lost, reported as a failure
            with self.lock:
                self.handleError(None)
            return
        self.write_bytes(data, time.monotonic())

    def write_bytes(self, data: bytes, now: float) -> None:
        """:meth:`write` for text already encoded in :attr:`encoding`; ``now`` is
        ``time.monotonic()`` (the direct path reads the clock once for every file of a line)."""
        with self.lock:
            try:
                rotation = self._rotation
                # The checks of _follow in one expression: it has nothing to do on almost
                # every line, and a call per file per line is a measurable part of a request.
                if self._regular and (
                        now >= self._next_check or self._fd < 0 or rotation is not None and (
                            rotation.counter[0] != self._generation
                            or self._size + len(data) >= self.maxBytes)):
                    self._follow(len(data), now)
                elif self._fd < 0:
                    self._open_fd()
                written = _write(self._fd, data)
                if written < len(data):  # only a nearly full disk writes short
                    self._write_rest(data, written)
                # The end of the file, other processes' lines included: what rotation needs.
                self._size = (_lseek(self._fd, 0, _SEEK_CUR) if rotation is not None
                              else self._size + len(data))
            except Exception:  # noqa: BLE001 - reported, never raised
                self.handleError(None)
                return
            if self._lost:
                sys.stderr.write(
                    f"sherlock_ai: writing {self.baseFilename} works again; "
                    f"{self._lost} records were lost\n"
                )
                self._lost = 0

    def _write_rest(self, data: bytes, written: int) -> None:
        while written < len(data):
            written += os.write(self._fd, data[written:])

    def _follow(self, adding: int, now: float) -> None:
        # What happened to the path since the last line: another process's rotation (a
        # memory read per line), an outside move or removal (a stat once a second), or a
        # full file to rotate.
        rotation = self._rotation
        if rotation is not None and rotation.generation != self._generation:
            self._reopen_rotated()
        if now >= self._next_check:
            self._next_check = now + self.check_interval
            if self._fd >= 0 and self._path_moved():
                self._moved_away()
        if self._fd < 0:
            self._open_fd()
        if rotation is not None and self._size > 0 and self._size + adding >= self.maxBytes:
            self._rotate(adding)

    def _reopen_rotated(self) -> None:
        assert self._rotation is not None
        self._generation = self._rotation.generation
        self._open_fd()

    def _moved_away(self) -> None:
        rotation = self._rotation
        if rotation is not None:
            if rotation.moved():
                # The folder was removed: a new lock file beside the new log.
                os.makedirs(os.path.dirname(self.baseFilename) or ".", exist_ok=True)
                rotation.open()
            else:
                # Another process may be between renaming the file and creating the new one.
                rotation.acquire()
                rotation.release()
                if rotation.generation != self._generation:
                    self._reopen_rotated()
                    if not self._path_moved():
                        return
            self._generation = rotation.generation
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            sys.stderr.write(
                f"sherlock_ai: {self.baseFilename} was removed or moved away (by log rotation?); "
                "writing to it anew\n"
            )
        except Exception:  # noqa: BLE001 - stderr itself may be gone
            pass

    def _rotate(self, adding: int) -> None:
        rotation = self._rotation
        assert rotation is not None
        rotation.acquire()
        try:
            if rotation.generation != self._generation or self._path_moved():
                # Another process rotated meanwhile: write into its new file instead.
                self._generation = rotation.generation
                self._open_fd()
                if not (self._size > 0 and self._size + adding >= self.maxBytes):
                    return
            self._size = os.fstat(self._fd).st_size  # with the other processes' lines
            if self._size > 0 and self._size + adding >= self.maxBytes:
                self._shift_backups()
                self._open_fd()
                rotation.rotated()
                self._generation = rotation.generation
        finally:
            rotation.release()

    def _shift_backups(self) -> None:
        # A file that is gone by the time it is renamed was moved by someone else (an outside
        # rotation such as logrotate's, landing between our checks and our rename): that
        # move is the rotation, and the caller opens the path anew.
        for i in range(self.backupCount - 1, 0, -1):
            source = self.rotation_filename(f"{self.baseFilename}.{i}")
            try:
                os.replace(source, self.rotation_filename(f"{self.baseFilename}.{i + 1}"))
            except FileNotFoundError:
                pass
        try:
            os.replace(self.baseFilename, self.rotation_filename(self.baseFilename + ".1"))
        except FileNotFoundError:
            pass

    def doRollover(self) -> None:
        """Rotate now (under the shared lock), whatever the file's size."""
        with self.lock:
            if self._rotation is not None:
                self._rotation.acquire()
                try:
                    self._shift_backups()
                    self._open_fd()
                    self._rotation.rotated()
                    self._generation = self._rotation.generation
                finally:
                    self._rotation.release()

    def close(self) -> None:
        with self.lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._rotation is not None:
                self._rotation.close()
                self._rotation = None
                self._closed_rotation = True
        super().close()

    def handleError(self, record: Optional[logging.LogRecord]) -> None:
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
