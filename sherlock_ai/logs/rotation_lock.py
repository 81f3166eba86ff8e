"""Rotation of one log file shared by several processes (gunicorn's workers, one ``logs/``).

Beside ``app.log`` lives ``.app.log.lock`` (hidden, so logrotate's ``logs/*`` skips it): an
advisory lock (``fcntl.lockf``, held only while a process rotates) and, in its first 8 bytes,
a rotation counter every writer maps into memory.
A writer reads the counter before each line (a memory read, no system call); when another
process rotated since its last line, it opens the path anew before writing, so no worker keeps
writing into the renamed file.
"""

from __future__ import annotations

import mmap
import os
from typing import Optional, Tuple, Union

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: each process rotates on its own
    fcntl = None  # type: ignore[assignment]

_COUNTER = 8  # bytes: one unsigned 64-bit counter
_CLOSED: Tuple[int] = (0,)


class RotationLock:
    """The lock file of one log file: :meth:`acquire`/:meth:`release` around a rotation,
    :attr:`generation` (how many rotations any process made) and :meth:`rotated`."""

    def __init__(self, log_path: str) -> None:
        folder, name = os.path.split(log_path)
        self.path = os.path.join(folder, f".{name}.lock")
        self._fd = -1
        self._map: Optional[mmap.mmap] = None
        #: The shared rotation counter, ``counter[0]`` (a ``(0,)`` stand-in while closed):
        #: read by every line, so a plain attribute rather than :attr:`generation`'s call.
        self.counter: Union[memoryview, Tuple[int]] = _CLOSED
        self._identity: Optional[Tuple[int, int]] = None
        self.open()

    def open(self) -> None:
        """Open (or create) the lock file and map its counter; closes an earlier one."""
        self.close()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            status = os.fstat(fd)
            if status.st_size < _COUNTER:
                # Extending to the same size is a no-op: a racing process loses nothing.
                os.ftruncate(fd, _COUNTER)
            self._map = mmap.mmap(fd, _COUNTER, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.counter = memoryview(self._map).cast("Q")
        self._identity = (status.st_dev, status.st_ino)

    @property
    def generation(self) -> int:
        """Rotations made so far, by any process (0 when the lock file is gone)."""
        return self.counter[0]

    def rotated(self) -> None:
        """Count one rotation (call it while holding the lock)."""
        counter = self.counter
        if isinstance(counter, memoryview):
            counter[0] = (counter[0] + 1) & 0xFFFFFFFFFFFFFFFF

    def moved(self) -> bool:
        """Whether the lock file's path no longer names the open file (``rm -rf logs/``)."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (status.st_dev, status.st_ino) != self._identity

    def acquire(self) -> None:
        """Wait for the other processes' rotation, then hold the lock (POSIX record locks
        belong to the process, so a forked child never holds its parent's)."""
        if fcntl is not None and self._fd >= 0:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if fcntl is not None and self._fd >= 0:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        counter, self.counter = self.counter, _CLOSED
        if isinstance(counter, memoryview):
            counter.release()
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
