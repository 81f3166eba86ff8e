"""The app's own logging behaves as without sherlock_ai: ``extra={"request_id": ...}`` works,
and a broken handler on sherlock_ai's loggers costs only its own output."""

from __future__ import annotations

import asyncio
import logging
import pickle

import httpx
from fastapi import FastAPI
from flask import Flask

import sherlock_ai
from sherlock_ai import LoggingConfig, MemoryTracker
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.integrations.flask import Sherlock


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_a_callers_request_id_in_extra_is_kept_and_others_get_ours(tmp_path):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    log = logging.getLogger("app.own_ids")
    with sherlock_ai.request_id_context("ours-1"):
        log.warning("with extra", extra={"request_id": "theirs-1"})
        log.warning("without extra")
        log.warning("other extra", extra={"user": "ann"})
    app_lines = [line.split(" - ", 2)[1:] for line in lines(setup.log_files["app"])]
    assert [(rid, rest.rsplit(" - ", 1)[1]) for rid, rest in app_lines] == [
        ("theirs-1", "with extra"), ("ours-1", "without extra"), ("ours-1", "other extra")]


def test_extra_request_id_reaches_every_formatter_style_and_json(tmp_path):
    sherlock_ai.install_request_id_factory()
    percent, brace, dollar = (tmp_path / f"{n}.log" for n in ("percent", "brace", "dollar"))
    handlers = [logging.FileHandler(percent), logging.FileHandler(brace),
                logging.FileHandler(dollar), logging.FileHandler(tmp_path / "json.log")]
    handlers[0].setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    handlers[1].setFormatter(logging.Formatter("{request_id} {message}", style="{"))
    handlers[2].setFormatter(logging.Formatter("$request_id $message", style="$"))
    from sherlock_ai.logs.json_lines import JsonFormatter

    handlers[3].setFormatter(JsonFormatter())
    logger = logging.getLogger("app.styles")
    logger.propagate = False
    for handler in handlers:
        logger.addHandler(handler)
    try:
        with sherlock_ai.request_id_context("ctx-7"):
            logger.warning("a", extra={"request_id": "given-7"})
            logger.warning("b")
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
    for path in (percent, brace, dollar):
        assert lines(path) == ["given-7 a", "ctx-7 b"], path
    assert '"request_id": "given-7"' in lines(tmp_path / "json.log")[0]
    assert '"request_id": "ctx-7"' in lines(tmp_path / "json.log")[1]


def test_records_keep_the_id_of_their_creation_through_copies_and_pickles():
    sherlock_ai.install_request_id_factory()
    with sherlock_ai.request_id_context("made-in"):
        record = logging.getLogger("app.x").makeRecord("app.x", 20, "f", 1, "m", (), None)
    assert record.request_id == "made-in"
    copied = pickle.loads(pickle.dumps(record))
    assert copied.request_id == "made-in" and copied.getMessage() == "m"
    assert logging.makeLogRecord({"msg": "n", "request_id": "given"}).request_id == "given"


def test_a_flask_view_logging_its_own_request_id_answers_200_and_logs_it(tmp_path):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    app = Flask("own_ids")
    Sherlock(app, trust_incoming_id=True)

    @app.get("/order")
    def order():
        logging.getLogger("app.flask_ids").info("order placed", extra={"request_id": "ord-42"})
        return "ok"

    # Closed, as a server does: an unclosed response would keep its measurement open.
    with app.test_client().get("/order", headers={"X-Request-ID": "hdr-1"}) as response:
        assert response.status_code == 200 and response.text == "ok"
    assert any(" - ord-42 - app.flask_ids - INFO - order placed" in line
               for line in lines(setup.log_files["app"]))


def test_a_fastapi_route_logging_its_own_request_id_answers_200_and_logs_it(tmp_path):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    app = FastAPI()

    @app.get("/order")
    async def order():
        logging.getLogger("app.fastapi_ids").info("placed", extra={"request_id": "ord-43"})
        return {"ok": True}

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=instrument_app(app, trust_incoming_id=True))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/order", headers={"X-Request-ID": "hdr-2"})

    response = asyncio.run(call())
    assert response.status_code == 200
    app_lines = lines(setup.log_files["app"])
    assert any(" - ord-43 - app.fastapi_ids - INFO - placed" in line for line in app_lines)
    # The MEMORY line keeps the request's own id.
    assert any(" - hdr-2 - MonitoringLogger - INFO - MEMORY | GET /order" in line
               for line in app_lines)


class Broken(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("broken handler")


def test_a_handler_raising_in_emit_costs_only_its_own_output(tmp_path, capfd):
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    monitoring = logging.getLogger("MonitoringLogger")
    broken = Broken()
    monitoring.addHandler(broken)
    try:
        for name in ("first", "second", "third"):
            with MemoryTracker(name):
                pass
    finally:
        monitoring.removeHandler(broken)
    names = [line.split(" | ")[1] for line in lines(setup.log_files["monitoring"])]
    assert names == ["first", "second", "third"]
    assert [line.split(" | ")[1] for line in lines(setup.log_files["app"])] == names
    err = capfd.readouterr().err
    assert err.count("broken handler") == 1 and "sherlock_ai: monitoring failed" in err


def test_extra_request_id_works_when_another_factory_wrapped_ours(tmp_path):
    sherlock_ai.install_request_id_factory()
    ours = logging.getLogRecordFactory()

    def other(*args, **kwargs):  # as OpenTelemetry's logging instrumentation does
        record = ours(*args, **kwargs)
        record.tenant = "t1"
        return record

    logging.setLogRecordFactory(other)
    try:
        setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
        with sherlock_ai.request_id_context("ctx-9"):
            logging.getLogger("app.wrapped").warning("a", extra={"request_id": "given-9"})
            logging.getLogger("app.wrapped").warning("b")
    finally:
        logging.setLogRecordFactory(ours)
    assert [line.split(" - ")[1] for line in lines(setup.log_files["app"])] == [
        "given-9", "ctx-9"]
