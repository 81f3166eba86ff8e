"""The line writer the set-up chooses: its renderers write the bytes ``logging``'s formatters
write, its files get each line once, and whether lines are also handed to ``logging`` is the
set-up's decision (``pass_to_logging``)."""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager

import pytest

import sherlock_ai
from sherlock_ai import LogFileConfig, LoggingConfig, Measurement
from sherlock_ai.logs import writer
from sherlock_ai.logs.records import RequestIdRecord

NOW = 1_796_130_000.4996  # a fixed time stamp, so both paths' lines can be compared byte for byte


@pytest.fixture(autouse=True)
def _plain_record_factory():
    """The factory a fresh process has: an earlier test may have left another one wrapping
    ours (the OpenTelemetry exporter's), which renders every line through a record."""
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    yield
    logging.setLogRecordFactory(previous)


@contextmanager
def only_ours():
    """Without pytest's own handlers on the root logger (its log capture), as in a service."""
    root = logging.getLogger()
    pytests = [h for h in root.handlers if type(h).__module__.startswith("_pytest")]
    for handler in pytests:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in pytests:
            root.addHandler(handler)


def measurements():
    """Lines of every kind, with names and values JSON and text must escape."""
    yield Measurement("memory", "GET /items/{id}", "SUCCESS", 0.0123, logging.INFO,
                      rss=52_428_800, rss_change=4096, traced=1234, traced_peak=99_999,
                      attributes={"method": "GET", "status_code": 200, "route": "/items/{id}"})
    yield Measurement("memory", 'q"uote\\ \u00e9\u2028', "ERROR", 1.5, logging.ERROR,
                      error="ValueError: bad \"x\"", rss=1 << 30, rss_change=-2048,
                      concurrent=3, attributes={"flag": True, "none": None, "ratio": 0.25,
                                                "sites": [{"file": "a.py", "line": 3}]})
    yield Measurement("performance", "slow_call", "SUCCESS", 0.2, logging.WARNING,
                      attributes={"args": "(1, 2)"})
    yield Measurement("resources", "job", "SUCCESS", 2.0, logging.INFO, rss=10_000_000,
                      rss_change=0, attributes={"cpu_percent": 12.5, "threads": 4,
                                                "io_read": 10, "io_write": 20})
    yield Measurement("memory", "odd", "SUCCESS", 0.5, logging.INFO, rss=1, rss_change=0,
                      attributes={"status": "replaced by an attribute", 7: "not a str key"})


def equal_values_of_other_types():
    """Request lines one after the other whose attributes are equal but not the same text
    (1 == True == 1.0, 0.0 == -0.0): a kept attribute text is never another value's."""
    for code in (1, True, 1.0, 0.0, -0.0, 0, None, "1"):
        yield Measurement("memory", "GET /same", "SUCCESS", 0.5, logging.INFO, rss=1,
                          rss_change=0, attributes={"method": "GET", "status_code": code})
    yield Measurement("memory", "GET /same", "SUCCESS", 0.5, logging.INFO, rss=1, rss_change=0,
                      attributes={"method": "GET", 7: "a key that is not a str"})
    yield Measurement("memory", "GET /same", "SUCCESS", 0.5, logging.INFO, rss=1, rss_change=0,
                      attributes={"timestamp": "a fixed key: the line's own is kept"})


def ours_only(test):
    """Run ``test`` with only_ours()."""
    import functools

    @functools.wraps(test)
    def run(*args, **kwargs):
        with only_ours():
            return test(*args, **kwargs)

    return run


def record_at_now(*args, **kwargs):
    """A record factory of the user's (it sends every line through logging) whose records
    carry the fixed time stamp the direct path is given."""
    record = RequestIdRecord(*args, **kwargs)
    record.created, record.msecs = NOW, int((NOW - int(NOW)) * 1000) + 0.0
    return record


def write_both_ways(tmp_path, monkeypatch, **config):
    """The bytes of each file after the measurements were rendered from their fields, and
    after they were rendered by formatting a record (chosen at set-up when a record factory
    of the user's is installed)."""
    monkeypatch.setattr(writer, "clock", lambda: NOW)
    out = []
    for way in ("fields", "record"):
        folder = tmp_path / way
        if way == "record":
            monkeypatch.setattr(logging, "_logRecordFactory", record_at_now)
        setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=folder, console_enabled=False,
                                                      **config))
        assert (writer.current.render == writer.current._through_record) is (way == "record")
        with sherlock_ai.request_id_context("rid-1"):
            for m in measurements():
                sherlock_ai.log_line.measurement_ended(m)
        for m in measurements():
            sherlock_ai.log_line.measurement_ended(m)
        out.append({key: path.read_bytes() for key, path in setup.log_files.items()})
        sherlock_ai.SherlockAI.cleanup()
        monkeypatch.setattr(logging, "_logRecordFactory", RequestIdRecord)
    return out


@pytest.mark.parametrize("config", [
    {},
    {"log_format": "%(asctime)s [%(process)d %(threadName)s] %(request_id)s %(name)s "
                   "%(levelno)s %(funcName)s %(filename)s:%(lineno)d %(message)s",
     "date_format": "%d/%m/%Y %H.%M.%S"},
    {"log_format_type": "json"},
], ids=["default", "custom-format", "json"])
@ours_only
def test_both_renderers_write_the_same_bytes(tmp_path, monkeypatch, config):
    direct_files, logging_files = write_both_ways(tmp_path, monkeypatch, **config)
    assert direct_files == logging_files
    assert direct_files["monitoring"].count(b"\n") == 8
    assert direct_files["errors"].count(b"\n") == 2
    assert direct_files["performance"].count(b"\n") == 2


@ours_only
def test_json_lines_parse_to_what_the_formatter_writes(tmp_path, monkeypatch):
    direct_files, logging_files = write_both_ways(tmp_path, monkeypatch, log_format_type="json")
    ours = [json.loads(line) for line in direct_files["app"].splitlines()]
    theirs = [json.loads(line) for line in logging_files["app"].splitlines()]
    assert ours == theirs and len(ours) == 10
    assert ours[0]["timestamp"] == "2026-12-01T13:00:00.499+00:00"
    assert list(ours[0])[:6] == ["timestamp", "level", "logger", "pid", "message", "request_id"]


class Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def one_line(name="job"):
    sherlock_ai.log_line.measurement_ended(
        Measurement("memory", name, "SUCCESS", 0.001, logging.INFO, rss=1, rss_change=0))


def monitoring_lines(setup):
    return setup.log_files["monitoring"].read_text().splitlines()


@pytest.fixture
def setup(tmp_path):
    with only_ours():
        setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
        one_line("before")
    assert not setup.pass_to_logging
    return setup


@pytest.mark.parametrize("where", ["MonitoringLogger", ""])
@pytest.mark.parametrize("pass_to_logging", [None, True, False])
@ours_only
def test_handlers_of_others_get_the_lines_as_the_set_up_decided(tmp_path, where,
                                                                pass_to_logging):
    # None: decided at set-up, from the handlers then present (here: one of the user's).
    seen = Seen()
    logging.getLogger(where or None).addHandler(seen)
    try:
        setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                                      pass_to_logging=pass_to_logging))
        one_line("handed")
    finally:
        logging.getLogger(where or None).removeHandler(seen)
    handed = pass_to_logging is not False
    assert setup.pass_to_logging is handed
    assert [r.getMessage().split(" | ")[1] for r in seen.records] == (["handed"] if handed
                                                                        else [])
    if handed:
        assert seen.records[0].sherlock.name == "handed"
        assert seen.records[0].request_id == "-"
    # The set-up's files get each line once, whoever else gets it.
    assert len(monitoring_lines(setup)) == 1
    assert len(setup.log_files["app"].read_text().splitlines()) == 1


@ours_only
def test_a_handler_added_after_the_set_up_gets_the_lines_when_asked_for(tmp_path):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                                  pass_to_logging=True))
    seen = Seen()
    logging.getLogger().addHandler(seen)
    try:
        one_line("later")
    finally:
        logging.getLogger().removeHandler(seen)
    assert [r.sherlock.name for r in seen.records] == ["later"]
    assert len(monitoring_lines(setup)) == 1


@ours_only
def test_levels_and_disable_are_honoured_at_once(setup):
    logger = logging.getLogger("MonitoringLogger")
    logger.setLevel(logging.WARNING)
    try:
        one_line("below the logger's level")
    finally:
        logger.setLevel(logging.NOTSET)
    logging.disable(logging.INFO)
    try:
        one_line("disabled")
    finally:
        logging.disable(logging.NOTSET)
    file_handler = next(h for h in logger.handlers)
    file_handler.setLevel(logging.ERROR)
    try:
        one_line("below the file's level")
    finally:
        file_handler.setLevel(logging.INFO)
    assert len(monitoring_lines(setup)) == 1
    assert len(setup.log_files["app"].read_text().splitlines()) == 2  # the root's file got it


@ours_only
def test_lines_of_many_threads_are_whole_and_in_time_order(tmp_path):
    files = {"app": LogFileConfig("app")}
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                                  log_format_type="json", log_files=files))

    def work(t):
        for i in range(400):
            one_line(f"t{t}-{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = [json.loads(line) for line in setup.log_files["app"].read_text().splitlines()]
    assert sorted(line["name"] for line in lines) == sorted(
        f"t{t}-{i}" for t in range(6) for i in range(400))
    stamps = [line["timestamp"] for line in lines]
    assert stamps == sorted(stamps)
    for t in range(6):  # each thread's lines in the order it made them
        mine = [int(line["name"].split("-")[1]) for line in lines
                if line["name"].startswith(f"t{t}-")]
        assert mine == sorted(mine)


@ours_only
def test_the_console_gets_the_same_bytes_both_ways(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(writer, "clock", lambda: NOW)
    out = []
    for way in ("direct", "logging"):
        seen = Seen()
        if way == "logging":
            logging.getLogger().addHandler(seen)
        sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path / way, log_files={}))
        capfd.readouterr()
        for m in measurements():
            sherlock_ai.log_line.measurement_ended(m)
        logging.getLogger().removeHandler(seen)
        assert len(seen.records) == (5 if way == "logging" else 0)
        err = capfd.readouterr().err
        # The logging path's time stamps are its own: compare what follows them.
        out.append([line.split(" - ", 1)[1] for line in err.splitlines() if " - " in line])
        sherlock_ai.SherlockAI.cleanup()
    assert out[0] == out[1] and len(out[0]) == 5


@ours_only
def test_a_removed_folder_and_a_full_disk_are_handled(tmp_path, capfd):
    import os
    import shutil
    import time

    from sherlock_ai.logs.files import SafeRotatingFileHandler

    logs = tmp_path / "logs"
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=logs, console_enabled=False))
    one_line("before")
    shutil.rmtree(logs)
    time.sleep(SafeRotatingFileHandler.check_interval + 0.1)
    one_line("after")
    assert [line.split(" | ")[1] for line in monitoring_lines(setup)] == ["after"]
    assert capfd.readouterr().err.count("monitoring.log was removed or moved away") == 1
    assert os.path.exists(logs / ".monitoring.log.lock")  # rotation is shared again
    if not os.path.exists("/dev/full"):
        return
    full = tmp_path / "full"
    full.mkdir()
    (full / "monitoring.log").symlink_to("/dev/full")
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=full, console_enabled=False,
                                          log_files={"monitoring": LogFileConfig(
                                              "monitoring", loggers=("MonitoringLogger",))}))
    for i in range(5):
        one_line(f"lost {i}")
    assert capfd.readouterr().err.count("cannot write") == 1


def test_the_json_encoder_writes_what_json_dumps_writes():
    from sherlock_ai import JsonFormatter

    formatter = JsonFormatter()
    for created in (NOW, 1_796_130_000.9999996, 1_796_130_000.0004996, 1.0):
        for m in [*measurements(), *equal_values_of_other_types()]:
            record = RequestIdRecord(m.kind, m.level, "sherlock_ai", 0, f"MEMORY | {m.name}",
                                     (), None)
            record.created, record.sherlock = created, m
            fast, generic = formatter.format(record), formatter.generic(record)
            assert fast == generic
            assert json.loads(fast) == json.loads(generic)
    record.trace_id, record.span_id = "a" * 32, "b" * 16  # an OpenTelemetry span: the keys too
    assert json.loads(formatter.format(record))["trace_id"] == "a" * 32


def test_a_line_that_cannot_be_encoded_fares_as_through_logging(tmp_path, capfd, monkeypatch):
    # A lone surrogate (from an exception message) cannot be UTF-8: the file reports the lost
    # line, the console still prints it, whether or not the line is also handed to logging.
    monkeypatch.setattr(writer, "clock", lambda: NOW)
    bad = Measurement("memory", "job", "ERROR", 0.001, logging.ERROR, error="bad \ud800",
                      rss=1, rss_change=0)
    out = []
    for way in ("direct", "logging"):
        seen = Seen()
        if way == "logging":
            logging.getLogger().addHandler(seen)
        setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path / way, log_files={
            "monitoring": LogFileConfig("monitoring", loggers=("MonitoringLogger",))}))
        capfd.readouterr()
        with only_ours():
            sherlock_ai.log_line.measurement_ended(bad)
            one_line("after")
        logging.getLogger().removeHandler(seen)
        err = capfd.readouterr().err
        assert err.count("cannot write") == 1 and "monitoring failed" not in err, err
        out.append(([line.split(" - ", 1)[1] for line in err.splitlines() if " - " in line],
                    [line.split(" - ", 1)[1] for line in monitoring_lines(setup)]))
        sherlock_ai.SherlockAI.cleanup()
    assert out[0] == out[1]
    console, file = out[0]
    assert [line.split(" | ")[1] for line in console] == ["job", "after"]
    assert [line.split(" | ")[1] for line in file] == ["after"]


@pytest.mark.parametrize("config", [
    {},
    {"log_format": "%(asctime)s %(request_id)s %(funcName)s %(levelname)s %(message)s",
     "date_format": "%d/%m/%Y %H.%M.%S"},
    {"log_format_type": "json"},
], ids=["default", "custom-format", "json"])
@ours_only
def test_a_request_writes_the_same_bytes_whether_or_not_a_measurement_is_built(
        tmp_path, monkeypatch, config):
    # With only the line listening, with another consumer beside it, and with a record factory
    # of the user's (rendered through a record): same figures, same bytes.
    import itertools

    from sherlock_ai.consumers import Consumer, add_consumer, registry, remove_consumer
    from sherlock_ai.engine import requests, span
    from sherlock_ai.engine.requests import RequestMeter

    class Other(Consumer):
        def measurement_ended(self, measurement):
            pass

    monkeypatch.setattr(writer, "clock", lambda: NOW)
    out = []
    for way in ("line only", "dispatched", "logging"):
        if way == "logging":
            monkeypatch.setattr(logging, "_logRecordFactory", record_at_now)
        ticks = itertools.count(0.0, 0.125)
        monkeypatch.setattr(span, "perf_counter", ticks.__next__)
        sizes = itertools.cycle([50 << 20, (50 << 20) + 12_288])
        monkeypatch.setattr(span, "current_rss", sizes.__next__)
        monkeypatch.setattr(requests, "current_rss", sizes.__next__)  # a request's first read
        setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path / way.replace(" ", "_"),
                                                      console_enabled=False, **config))
        other = Other()
        if way == "dispatched":
            add_consumer(other)
        try:
            meter = RequestMeter(protocol="asgi", min_duration=0.0, trace_malloc=False,
                                 listeners=registry)
            with sherlock_ai.request_id_context("rid-7"):
                meter.open().end("GET /items/{id}", {"method": "GET",
                                                        "route": "/items/{id}",
                                                        "status_code": 200})
                meter.open().end("POST /x", {"method": "POST", "route": "/x",
                                                "status_code": 503}, error="HTTP 503")
                meter.open().end("GET /y", {"method": "GET", "route": "/y",
                                               "status_code": None}, exc=ValueError("bad\nx"))
        finally:
            remove_consumer(other)
            monkeypatch.setattr(logging, "_logRecordFactory", RequestIdRecord)
        out.append({key: path.read_bytes() for key, path in setup.log_files.items()})
        sherlock_ai.SherlockAI.cleanup()
    line_only, dispatched, through_logging = out
    assert line_only == dispatched == through_logging
    assert line_only["monitoring"].count(b"\n") == 3
    assert line_only["errors"].count(b"\n") == 2
    assert b"0.125s" in line_only["monitoring"] and b"12.00KB" in line_only["monitoring"]


@ours_only
def test_a_request_line_honours_the_loggers_level_at_once(tmp_path):
    # A request's line reads the level for each line, as logging does.
    from sherlock_ai.consumers import registry
    from sherlock_ai.engine.requests import RequestMeter

    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    logger = logging.getLogger("MonitoringLogger")
    meter = RequestMeter(protocol="asgi", min_duration=0.0, trace_malloc=False,
                         listeners=registry)
    try:
        meter.open().end("GET /a", {})
        logger.setLevel(logging.WARNING)
        meter.open().end("GET /b", {})
        meter.open().end("GET /c", {}, error="HTTP 500")
        logger.setLevel(logging.NOTSET)
        logging.disable(logging.ERROR)
        meter.open().end("GET /d", {}, error="HTTP 500")
        logging.disable(logging.NOTSET)
        meter.open().end("GET /e", {})
        text = setup.log_files["monitoring"].read_text(encoding="utf-8")
    finally:
        logger.setLevel(logging.NOTSET)
        logging.disable(logging.NOTSET)
        sherlock_ai.SherlockAI.cleanup()
    names = [line.split(" | ")[1] for line in text.splitlines()]
    assert names == ["GET /a", "GET /c", "GET /e"]
