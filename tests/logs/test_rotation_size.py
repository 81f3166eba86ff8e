"""A rotating file rotates at its real size: the lines of every writer count, whether the
writer is this handler, another handler of the same path or a forked child."""

from __future__ import annotations

import os

import pytest

from sherlock_ai.logs.files import SafeRotatingFileHandler

LINE = 100  # bytes, newline included


def line(char: str, size: int = LINE) -> str:
    return char * (size - 1) + "\n"


def family(path):
    """The file and its backups, oldest first."""
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, path]


@pytest.fixture
def handlers():
    made = []

    def make(path, max_bytes, backups=50):
        made.append(SafeRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups))
        return made[-1]

    yield make
    for handler in made:
        handler.close()


def test_two_handlers_of_one_path_rotate_it_at_its_size(tmp_path, handlers):
    path = tmp_path / "app.log"
    mine, other = handlers(path, 5000), handlers(path, 5000)
    for i in range(400):  # every fifth line is the other handler's
        (other if i % 5 == 4 else mine).write(line("o" if i % 5 == 4 else "m"))
    written = family(path)
    assert sum(len(p.read_text().splitlines()) for p in written) == 400
    assert len(written) > 5
    for backup in written[:-1]:
        # Rotated before the line that would reach max_bytes, give or take the one line
        # the other handler wrote since this one's last line.
        assert 5000 - 2 * LINE <= backup.stat().st_size <= 5000 + LINE, backup


@pytest.mark.servers
def test_a_line_of_a_forked_child_counts_for_its_parents_rotation(tmp_path, handlers):
    path = tmp_path / "app.log"
    handler = handlers(path, 1000)
    handler.write(line("p", 500))
    child = os.fork()
    if child == 0:  # the child: one line, then out without running the parent's clean-up
        status = 1
        try:
            handler.write(line("c", 450))
            status = 0
        finally:
            os._exit(status)
    assert os.waitpid(child, 0)[1] == 0
    handler.write(line("q", 10))  # the file now ends at 960, the child's line included
    handler.write(line("r"))  # 960 + 100 reaches 1000: rotated first
    assert (tmp_path / "app.log.1").stat().st_size == 960
    assert path.read_text() == line("r")
