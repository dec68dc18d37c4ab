# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two locks: `serve` installs only the runtime (requirements-runtime.lock, no extras); test, lint
# and bench add the dev and bench extras (requirements-dev.lock, compiled with the runtime lock
# as a constraint, so a package both need has one version).
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: serve test bench lint install install-dev clean lock browser-deps browser-test e2e

$(STAMP): requirements-runtime.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-runtime.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.lock
	$(BIN)/python -m pip install -q -r requirements-dev.lock
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

serve: $(STAMP)
	$(BIN)/droptv-live serve

# The browser tests (tests/test_browser.py) drive Debian's Chromium through playwright-core,
# installed from tests/browser/package-lock.json (no browser download); without Chromium or
# npm they skip, saying so. The JS client's node tests run inside pytest (test_web_client_js).
BROWSER_DIR := tests/browser
CHROMIUM ?= /usr/bin/chromium
BROWSER_DRIVER := $(BROWSER_DIR)/node_modules/.package-lock.json

test: $(DEV_STAMP)
	@if [ -x $(CHROMIUM) ] && command -v npm >/dev/null 2>&1; then $(MAKE) -s $(BROWSER_DRIVER); \
	else echo "make test: no $(CHROMIUM) or no npm: the browser tests will skip (make browser-test installs Chromium)"; fi
	$(BIN)/python -m pytest -q

$(BROWSER_DRIVER): $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent

# Debian's chromium when it is missing (as root), then the driver.
browser-deps:
	@[ -x $(CHROMIUM) ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && apt-get install -y -qq chromium; } \
	  || { echo "browser-test: $(CHROMIUM) missing; install Debian's chromium (as root)"; exit 1; }
	@$(MAKE) -s $(BROWSER_DRIVER)

browser-test: $(DEV_STAMP) browser-deps
	DROPTV_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/test_browser.py tests/test_web_pages.py tests/test_web_client_js.py

# ffmpeg -> real nginx-rtmp -> our hooks (installs nginx, libnginx-mod-rtmp and ffmpeg as root).
e2e: $(DEV_STAMP)
	@command -v ffmpeg >/dev/null 2>&1 && [ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq nginx libnginx-mod-rtmp ffmpeg; }
	$(BIN)/python -m pytest -q tests/test_e2e_rtmp.py tests/test_hooks.py

# wrk drives bench.rest when it can be installed; otherwise bench.rest falls back to aiohttp clients.
bench: $(DEV_STAMP)
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } || echo "wrk unavailable: bench.rest uses its aiohttp fallback"
	$(BIN)/python -m bench.all

# The gate .ci/run applies before the tests: lint, formatting, mypy strict (packages in pyproject).
lint: $(DEV_STAMP)
	$(BIN)/ruff check protocol store server bench tests droptv_live_client
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lock:
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -o requirements-runtime.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra bench -c requirements-runtime.lock \
	  --python-version 3.11 -o requirements-dev.lock

clean:
	rm -rf $(VENV) .droptv
