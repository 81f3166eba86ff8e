"""Logging set-up writes the specification's lines, with request ids, to real files."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

import sherlock_ai
from sherlock_ai import LogFileConfig, LoggingConfig, MemoryTracker, monitor_memory

SPEC_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - (?P<rid>[0-9a-f]{16}|-) - MonitoringLogger - INFO - "
    r"MEMORY \| (?P<name>[^|]+) \| SUCCESS \| \d+\.\d{3}s \| Current: \d+\.\d\d[KMG]?B"
    r" \| Change: [+-]\d+\.\d\d[KMG]?B \| Traced: -?\d+\.\d\d[KMG]?B \(Peak: \d+\.\d\d[KMG]?B\)$"
)


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def visible(folder):
    """The files of ``folder`` a user sees (the rotation's lock files are hidden)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def test_text_files_hold_the_exact_format_with_and_without_request_id(tmp_path):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    with MemoryTracker("data_processing"):
        pass
    with sherlock_ai.request_id_context() as rid, MemoryTracker("in_request"):
        pass
    logging.getLogger("MonitoringLogger").handlers[0].flush()

    monitoring = read_lines(setup.log_files["monitoring"])
    assert len(monitoring) == 2
    first, second = (SPEC_LINE.match(line) for line in monitoring)
    assert first and second, monitoring
    assert (first["rid"], first["name"]) == ("-", "data_processing")
    assert (second["rid"], second["name"]) == (rid, "in_request")
    # app.log has every record too; the performance file has none of these.
    assert len(read_lines(setup.log_files["app"])) == 2
    assert read_lines(setup.log_files["performance"]) == []
    assert set(visible(tmp_path)) == {"app.log", "errors.log", "monitoring.log",
                                         "performance.log"}


def test_errors_file_gets_error_lines_only(tmp_path):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))

    @monitor_memory(trace_malloc=False)
    def fail():
        raise ValueError("nope")

    with pytest.raises(ValueError):
        fail()
    with MemoryTracker("fine"):
        pass
    (line,) = read_lines(setup.log_files["errors"])
    assert " - MonitoringLogger - ERROR - MEMORY | " in line
    assert line.endswith("| Error: ValueError: nope")


def test_json_lines_carry_structured_fields(tmp_path):
    setup = sherlock_ai.sherlock_ai(
        LoggingConfig(logs_dir=tmp_path, log_format_type="json", console_enabled=False)
    )
    with sherlock_ai.request_id_context("req-1"), MemoryTracker("json_block"):
        kept = b"y" * 1_000_000
    sherlock_ai.get_logger("user").warning("hello %s", "world")
    records = [json.loads(line) for line in read_lines(setup.log_files["app"])]
    assert setup.log_files["app"].name == "app.jsonl"
    memory, user = records
    assert memory["logger"] == "MonitoringLogger" and memory["level"] == "INFO"
    assert memory["request_id"] == "req-1"
    assert memory["name"] == "json_block" and memory["status"] == "SUCCESS"
    assert memory["kind"] == "memory" and memory["concurrent"] == 0
    assert 1_000_000 <= memory["traced"] <= 1_100_000
    assert memory["traced_peak"] >= memory["traced"]
    assert isinstance(memory["rss"], int) and isinstance(memory["rss_change"], int)
    assert memory["message"].startswith("MEMORY | json_block | SUCCESS | ")
    assert user == {**user, "message": "hello world", "request_id": "-", "logger": "user"}
    assert user["timestamp"].endswith("+00:00")
    del kept


def test_setup_twice_does_not_duplicate_lines(tmp_path):
    config = LoggingConfig(logs_dir=tmp_path, console_enabled=False)
    sherlock_ai.sherlock_ai(config)
    setup = sherlock_ai.SherlockAI(config).setup()
    with MemoryTracker("once"):
        pass
    assert len(read_lines(setup.log_files["monitoring"])) == 1


def test_rotation_keeps_the_configured_backups(tmp_path):
    files = {"app": LogFileConfig("app", max_bytes=2_000, backup_count=2)}
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                          log_files=files))
    for i in range(100):
        logging.getLogger("x").info("line %d %s", i, "z" * 50)
    assert visible(tmp_path) == ["app.log", "app.log.1", "app.log.2"]


def test_rotation_counts_what_is_already_in_the_file(tmp_path):
    (tmp_path / "app.log").write_text("x" * 1_990 + "\n", encoding="utf-8")
    files = {"app": LogFileConfig("app", max_bytes=2_000, backup_count=1)}
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                          log_files=files))
    logging.getLogger("x").info("first line after a restart")
    assert read_lines(tmp_path / "app.log.1") == ["x" * 1_990]
    assert read_lines(tmp_path / "app.log")[0].endswith("first line after a restart")


def test_a_record_longer_than_max_bytes_never_rotates_an_empty_file(tmp_path):
    files = {"app": LogFileConfig("app", max_bytes=200, backup_count=3)}
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                          log_files=files))
    logger = logging.getLogger("x")
    for i in range(2):
        logger.info("big %d %s", i, "z" * 500)
    # Each big record fills a file of its own, and no backup is an empty file.
    assert visible(tmp_path) == ["app.log", "app.log.1"]
    backups = [read_lines(tmp_path / name) for name in ("app.log.1", "app.log")]
    assert [lines[0].split(" - ")[-1][:5] for lines in backups] == ["big 0", "big 1"]


@pytest.mark.parametrize("date_format", ["%Y-%m-%d %H:%M:%S", "%H:%M:%S.%f", None])
def test_time_stamps_follow_each_record_across_seconds(tmp_path, date_format):
    config = LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                           log_format="%(asctime)s %(message)s", date_format=date_format)
    sherlock_ai.sherlock_ai(config)
    logger = logging.getLogger("x")
    created = [1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.5, 1_700_000_000.5]
    for when in created:
        record = logger.makeRecord("x", logging.INFO, __file__, 1, f"at {when}", (), None)
        record.created, record.msecs = when, (when % 1) * 1000
        logger.handle(record)
    expected = [logging.Formatter(datefmt=date_format).formatTime(
        logging.makeLogRecord({"created": when, "msecs": (when % 1) * 1000}), date_format)
        for when in created]
    stamps = [line.rsplit(" at ", 1)[0] for line in read_lines(tmp_path / "app.log")]
    assert stamps == expected
    assert stamps[1] != stamps[2] and stamps[2] != stamps[3]


def test_a_record_in_several_files_is_the_same_text_in_each(tmp_path):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    for i in range(3):
        with MemoryTracker(f"block{i}", trace_malloc=False):
            pass
    assert read_lines(setup.log_files["app"]) == read_lines(setup.log_files["monitoring"])
    assert [line.split(" | ")[1] for line in read_lines(setup.log_files["app"])] == [
        "block0", "block1", "block2"]


def test_request_id_is_on_every_record_for_user_formats(tmp_path):
    sherlock_ai.install_request_id_factory()
    path = tmp_path / "own.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    logger = logging.getLogger("own")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside")
        with sherlock_ai.request_id_context("abc"):
            logger.warning("inside")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert read_lines(path) == ["- outside", "abc inside"]


def test_unwritable_logs_dir_falls_back_to_the_console(tmp_path, capfd):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=blocker / "logs",
                                                  console_enabled=False))
    assert setup.log_files == {} and setup.errors
    with MemoryTracker("still_logged"):
        pass
    err = capfd.readouterr().err
    assert "logging to the console instead" in err
    assert "MEMORY | still_logged | SUCCESS" in err


def test_full_disk_at_run_time_is_reported_once_and_the_app_keeps_going(tmp_path, capfd):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    (tmp_path / "app.log").symlink_to("/dev/full")
    files = {"app": LogFileConfig("app")}
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                          log_files=files))

    @monitor_memory(trace_malloc=False)
    def handler(x):
        return x + 1

    assert [handler(i) for i in range(5)] == [1, 2, 3, 4, 5]
    err = capfd.readouterr().err
    assert err.count("cannot write") == 1, err


def test_bad_config_is_refused_at_setup():
    with pytest.raises(ValueError, match="log_format_type"):
        sherlock_ai.SherlockAI(LoggingConfig(log_format_type="xml"))
    with pytest.raises(ValueError, match="log_level"):
        sherlock_ai.SherlockAI(LoggingConfig(console_level="CHATTY"))
