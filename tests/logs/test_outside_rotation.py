"""An outside rename (logrotate's rename-and-create) that lands during our own size rotation
is a rotation done by someone else: no line is lost. Real processes: one writing with small
files, one renaming the file away as fast as it can."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.servers

LINES = 6000

WRITER = textwrap.dedent("""
    import sys
    from sherlock_ai.logs.files import SafeRotatingFileHandler

    # backupCount: none shifted out
    handler = SafeRotatingFileHandler(sys.argv[1], maxBytes=2000, backupCount=500)
    handler.check_interval = 0.0  # look at the path before every line: the widest race
    for i in range(int(sys.argv[2])):
        handler.write(f"line {i:06d} " + "x" * 40 + "\\n")
    handler.close()
""")

RENAMER = textwrap.dedent("""
    import os, sys
    path, folder, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    n = 0
    while not os.path.exists(stop):
        try:
            os.rename(path, os.path.join(folder, f"outside-{n}"))
            n += 1
        except FileNotFoundError:
            pass
""")


def test_an_outside_rename_during_our_rotation_loses_no_line(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    moved = tmp_path / "moved"
    moved.mkdir()
    stop = tmp_path / "stop"
    path = logs / "app.log"
    renamer = subprocess.Popen([sys.executable, "-c", RENAMER, str(path), str(moved), str(stop)])
    try:
        writer = subprocess.run([sys.executable, "-c", WRITER, str(path), str(LINES)],
                                capture_output=True, text=True, timeout=120)
    finally:
        stop.touch()
        try:
            renamer.wait(timeout=10)
        finally:
            renamer.kill()
            renamer.wait()
    assert writer.returncode == 0, writer.stderr
    assert "cannot write" not in writer.stderr, writer.stderr
    written = [line for folder in (logs, moved) for p in folder.iterdir()
               if not p.name.startswith(".") for line in p.read_text().splitlines()]
    numbers = sorted(int(line.split()[1]) for line in written)
    assert numbers == list(range(LINES))
    assert len(list(moved.iterdir())) > 10  # the renamer did land many renames
