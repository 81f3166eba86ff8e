"""The set-ups a newcomer and a real service make, each in a fresh process: the README's web
snippet, no set-up at all, an app's own ``dictConfig`` before or after ``sherlock_ai()``, and
``logging.basicConfig()`` beside it. Every line appears, once, or one message says what to
add; constructing a middleware changes nothing of logging."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sherlock_ai.logs.writer import NO_HANDLER

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
HINT = NO_HANDLER.format(logger="MonitoringLogger").strip()
LOGGING_STATE = textwrap.dedent("""
    import logging
    def logging_state():
        root = logging.getLogger()
        return (logging.getLogRecordFactory(), list(root.handlers), root.level,
                logging.getLogger("MonitoringLogger").handlers)
""")


def run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def memory_lines(text: str):
    return [line for line in text.splitlines() if "MEMORY | " in line]


def readme_web_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (snippet,) = [block for block in blocks if "instrument_app" in block]
    return snippet


DRIVE_FASTAPI = textwrap.dedent("""
    from starlette.testclient import TestClient
    with TestClient(app) as client:
        assert client.get("/items/1").status_code == 404
        assert client.get("/items/2").status_code == 404
""")


def test_the_readme_web_snippet_writes_its_lines(tmp_path):
    assert "sherlock_ai.sherlock_ai()" in readme_web_snippet()
    result = run(readme_web_snippet() + DRIVE_FASTAPI, tmp_path)
    assert len(memory_lines(result.stderr)) == 2, result.stderr
    assert len(memory_lines((tmp_path / "logs" / "monitoring.log").read_text())) == 2
    assert HINT not in result.stderr


def test_without_set_up_one_message_says_what_to_add(tmp_path):
    # The snippet without its set-up line, as a newcomer may copy it: no handler anywhere.
    snippet = readme_web_snippet().replace("sherlock_ai.sherlock_ai()", "")
    code = LOGGING_STATE + "before = logging_state()\n" + snippet + textwrap.dedent("""
        assert logging_state() == before, (before, logging_state())  # nothing changed
    """) + DRIVE_FASTAPI
    result = run(code, tmp_path)
    assert result.stderr.count(HINT) == 1, result.stderr
    assert not (tmp_path / "logs").exists()


def test_flask_without_set_up_says_what_to_add_and_with_it_writes(tmp_path):
    app = textwrap.dedent("""
        import flask
        from sherlock_ai.integrations.flask import Sherlock
        app = flask.Flask("shop")
        before = logging_state()
        Sherlock(app)
        assert logging_state() == before, (before, logging_state())
        @app.get("/items/<int:n>")
        def item(n):
            return {"n": n}
        client = app.test_client()
        for n in range(3):
            client.get(f"/items/{n}").close()
    """)
    bare = run(LOGGING_STATE + app, tmp_path)
    assert bare.stderr.count(HINT) == 1, bare.stderr
    set_up = run("import sherlock_ai\nsherlock_ai.sherlock_ai()\n" + LOGGING_STATE + app,
                 tmp_path)
    assert len(memory_lines(set_up.stderr)) == 3, set_up.stderr
    assert HINT not in set_up.stderr


def test_basic_config_alone_shows_the_lines_without_a_message(tmp_path):
    result = run(textwrap.dedent("""
        import logging
        from sherlock_ai import MemoryTracker
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        with MemoryTracker("job", trace_malloc=False):
            pass
    """), tmp_path)
    assert len(memory_lines(result.stderr)) == 1 and HINT not in result.stderr


DICT_CONFIG = """
logging.config.dictConfig({
    "version": 1,
    "formatters": {"plain": {"format": "%(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "stream": "ext://sys.stdout"}},
    "loggers": {"app": {"handlers": ["console"], "level": "INFO"}},
})
"""
WORK = """
with MemoryTracker("job", trace_malloc=False):
    pass
logging.getLogger("MonitoringLogger").warning("LEAK SUSPECT | job | +1.00KB/request | x")
logging.getLogger("app").info("app line")
"""


def test_an_apps_dict_config_after_the_set_up_keeps_every_line(tmp_path):
    result = run("import logging, logging.config, sherlock_ai\n"
                 "from sherlock_ai import MemoryTracker\n"
                 "sherlock_ai.sherlock_ai()\n" + DICT_CONFIG + WORK, tmp_path)
    monitoring = (tmp_path / "logs" / "monitoring.log").read_text()
    assert len(memory_lines(monitoring)) == 1, monitoring
    assert "LEAK SUSPECT | job" in monitoring
    assert len(memory_lines(result.stderr)) == 1  # the set-up's console still prints it
    assert "app app line" in result.stdout  # the app's own console, as it configured it
    assert "cannot write" not in result.stderr


def test_an_apps_dict_config_before_the_set_up_keeps_every_line(tmp_path):
    result = run("import logging, logging.config, sherlock_ai\n"
                 "from sherlock_ai import MemoryTracker\n"
                 + DICT_CONFIG + "sherlock_ai.sherlock_ai()\n" + WORK, tmp_path)
    monitoring = (tmp_path / "logs" / "monitoring.log").read_text()
    assert len(memory_lines(monitoring)) == 1, monitoring
    assert "LEAK SUSPECT | job" in monitoring
    assert len(memory_lines(result.stderr)) == 1


def test_event_lines_after_an_apps_dict_config_reach_the_set_ups_files(tmp_path):
    # A dictConfig that gives the root logger its own handlers, as Django's LOGGING does:
    # the set-up's file of every record is no longer on any logger.
    result = run(textwrap.dedent("""
        import logging, logging.config, sherlock_ai
        from sherlock_ai.guard.events import BudgetEvent, tell
        from sherlock_ai.leaks.fit import Estimate
        from sherlock_ai.leaks.suspects import SuspectBook
        sherlock_ai.sherlock_ai()
        logging.config.dictConfig({
            "version": 1,
            "handlers": {"console": {"class": "logging.StreamHandler",
                                     "stream": "ext://sys.stdout"}},
            "root": {"handlers": ["console"], "level": "INFO"},
        })
        tell(BudgetEvent("POST /export", "POST", "/export", 200 << 20, 50 << 20, "rss_change"))
        SuspectBook().update({}, ["POST /thumbnail"], native={
            0: Estimate(98304.0, 9.0, 500, 49_152_000, 0, 1.0, 5, 1.0)})
    """), tmp_path)
    for name in ("app.log", "monitoring.log"):
        text = (tmp_path / "logs" / name).read_text()
        assert "WARNING - MEMORY BUDGET | POST /export | +200.00MB > 50.00MB" in text, name
        assert "WARNING - LEAK SUSPECT | POST /thumbnail | +96.00KB/request" in text, name
    assert "LEAK SUSPECT | POST /thumbnail" in result.stderr  # the set-up's console


def test_an_apps_dict_config_without_set_up_keeps_our_lines_on_its_root_handler(tmp_path):
    result = run(textwrap.dedent("""
        import logging, logging.config
        from sherlock_ai import MemoryTracker
        logging.config.dictConfig({
            "version": 1,
            "handlers": {"console": {"class": "logging.StreamHandler",
                                     "stream": "ext://sys.stdout"}},
            "root": {"handlers": ["console"], "level": "INFO"},
        })
        with MemoryTracker("job", trace_malloc=False):
            pass
    """), tmp_path)
    assert len(memory_lines(result.stdout)) == 1, result.stdout + result.stderr


BASIC_AND_SET_UP = """
import logging, sherlock_ai
from sherlock_ai import MemoryTracker
{first}
{second}
with MemoryTracker("job", trace_malloc=False):
    pass
logging.getLogger("app").info("app line")
"""


def test_basic_config_and_the_set_up_print_each_line_once(tmp_path):
    basic = 'logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")'
    for order in ((basic, "sherlock_ai.sherlock_ai()"), ("sherlock_ai.sherlock_ai()", basic)):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        result = run(BASIC_AND_SET_UP.format(first=order[0], second=order[1]), folder)
        assert len(memory_lines(result.stderr)) == 1, (order, result.stderr)
        assert result.stderr.count("app line") == 1, (order, result.stderr)
        app_log = (folder / "logs" / "app.log").read_text()
        assert len(memory_lines(app_log)) == 1 and app_log.count("app line") == 1
