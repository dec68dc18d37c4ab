# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test bench lint install clean lock

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/droptv-live serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

# wrk drives bench.rest when it can be installed; otherwise bench.rest falls back to aiohttp clients.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } || echo "wrk unavailable: bench.rest uses its aiohttp fallback"
	$(BIN)/python -m bench.all

# The gate .ci/run applies before the tests: lint, formatting, mypy strict (packages in pyproject).
lint: $(STAMP)
	$(BIN)/ruff check protocol store server bench tests droptv_live_client
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lock:
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .droptv
