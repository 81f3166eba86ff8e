"""Log files survive their folder being removed and an outside rotation (logrotate's
rename-and-create): the path is checked at most once a second and opened anew."""

from __future__ import annotations

import logging
import os
import shutil
import time

import sherlock_ai
from sherlock_ai import LoggingConfig
from sherlock_ai.logs.files import SafeRotatingFileHandler

log = logging.getLogger("app.files")


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def visible(folder):
    """The files of ``folder`` a user sees (the rotation's lock files are hidden)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def messages(path):
    return [line.rsplit(" - ", 1)[1] for line in lines(path)]


def wait_past_the_next_check() -> None:
    time.sleep(SafeRotatingFileHandler.check_interval + 0.1)


def test_a_removed_logs_folder_is_recreated_and_reported_once(tmp_path, capfd):
    logs = tmp_path / "logs"
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=logs, console_enabled=False))
    log.warning("before")
    shutil.rmtree(logs)
    wait_past_the_next_check()
    log.warning("after 1")
    log.warning("after 2")
    assert messages(setup.log_files["app"]) == ["after 1", "after 2"]
    err = capfd.readouterr().err
    assert err.count("app.log was removed or moved away") == 1, err
    # Files that had no line since are opened again when their next line comes.
    assert visible(logs) == ["app.log"]
    log.error("an error")
    assert messages(setup.log_files["errors"]) == ["an error"]


def test_lines_in_the_second_after_a_removal_go_to_the_removed_file(tmp_path):
    logs = tmp_path / "logs"
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=logs, console_enabled=False))
    # The path is not looked at for every line: one written right after the removal still
    # goes to the old (now unlinked) file.
    log.warning("first")
    shutil.rmtree(logs)
    log.warning("in the gap")
    assert not logs.exists()
    wait_past_the_next_check()
    log.warning("later")
    assert messages(setup.log_files["app"]) == ["later"]


def test_logrotate_rename_and_create_moves_writing_to_the_new_file(tmp_path, capfd):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    app_log = setup.log_files["app"]
    log.warning("old 1")
    # What logrotate does by default: rename the file, create an empty one in its place.
    os.rename(app_log, tmp_path / "app.log.1")
    app_log.touch()
    log.warning("old 2")  # within the second: still the renamed file, nothing lost
    wait_past_the_next_check()
    log.warning("new 1")
    log.warning("new 2")
    assert messages(tmp_path / "app.log.1") == ["old 1", "old 2"]
    assert messages(app_log) == ["new 1", "new 2"]
    assert capfd.readouterr().err.count("app.log was removed or moved away") == 1


def test_the_files_own_rotation_is_not_taken_for_a_move(tmp_path, capfd):
    from sherlock_ai import LogFileConfig

    files = {"app": LogFileConfig("app", max_bytes=300, backup_count=2)}
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                                  log_files=files))
    for i in range(10):
        log.warning("line %d %s", i, "x" * 60)
    wait_past_the_next_check()
    log.warning("last")
    assert messages(setup.log_files["app"])[-1] == "last"
    assert "moved away" not in capfd.readouterr().err
