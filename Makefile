# Everything runs in .venv, created on first use from the Python on PATH (3.9 or newer).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench soak lint peers clean

# make test checks the whole package with mypy --strict.
TYPED := sherlock_ai

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
	$(BIN)/python -m pytest -m "not slow and not servers"
	$(BIN)/python -m pytest -m "servers and not slow"

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
