# Everything runs in .venv, created on first use from the Python on PATH (3.9 or newer).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench soak lint peers clean

# Checked with mypy --strict in make test; the rest of logs/, guard/, report/,
# integrations/collected.py, celery.py and django/ join the list once their remaining errors
# are fixed.
TYPED := sherlock_ai/__init__.py sherlock_ai/consumers.py sherlock_ai/decorators.py \
	sherlock_ai/formatting.py sherlock_ai/parameters.py sherlock_ai/request_id.py \
	sherlock_ai/safety.py sherlock_ai/trackers.py sherlock_ai/engine sherlock_ai/exporters \
	sherlock_ai/deaths sherlock_ai/leaks sherlock_ai/logs/render.py sherlock_ai/logs/writer.py \
	sherlock_ai/integrations/gunicorn_hooks.py sherlock_ai/integrations/outgoing.py \
	sherlock_ai/integrations/__init__.py sherlock_ai/integrations/asgi.py \
	sherlock_ai/integrations/asgi_request.py sherlock_ai/integrations/asgi_routes.py \
	sherlock_ai/integrations/fastapi.py sherlock_ai/integrations/flask.py \
	sherlock_ai/integrations/keys.py sherlock_ai/integrations/measured.py \
	sherlock_ai/integrations/options.py sherlock_ai/integrations/policy.py \
	sherlock_ai/integrations/server_logs.py sherlock_ai/integrations/shedding.py \
	sherlock_ai/integrations/wsgi.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy --follow-imports=silent $(TYPED)
	$(BIN)/mypy --follow-imports=silent tests/typing/usage.py
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/guard_demo.py

# Rewrites docs/performance.md (about 12 min). The uvicorn section needs wrk and the
# instruction counts valgrind (Debian: apt-get install wrk valgrind); each says so without.
# A quick check of one section, writing nothing:
# .venv/bin/python -m benchmarks.run_all --only bench_server --quick
bench: install
	$(BIN)/python -m benchmarks.run_all

soak: install
	$(BIN)/python -m pytest -m slow

# FastAPI's, Starlette's and Flask's own suites without and with sherlock_ai (docs/peers.md).
peers:
	$(PYTHON) peers/run.py

clean:
	rm -rf $(VENV) logs demo-logs .pytest_cache .venv-peers peers/.work
