# Every target bootstraps its own virtualenv: nothing is installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYDIRS := $(wildcard src tests bench)
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: run test lint typecheck test-fast test-load test-faults bench clean

# Byte-compile the package as `pip install` would. Where PYTHONDONTWRITEBYTECODE is set
# (it is on some CI hosts), every process from a source checkout (the service, each CLI
# call in the tests, each benchmark run) would otherwise compile ~110 modules afresh:
# ~0.3 CPU-s per start. Up to date, this takes a tenth of a second.
COMPILE := $(BIN)/python -m compileall -q src >/dev/null

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(COMPILE)
	$(BIN)/mediakeep serve

lint: $(STAMP)
	$(BIN)/ruff check $(PYDIRS)
	$(BIN)/ruff format --check $(PYDIRS)
	$(BIN)/mypy

# Chromium for the console's browser tests (tests/console), from Debian: Playwright
# drives it; its own browser download is never used.
BROWSERS := $(VENV)/.browsers

$(BROWSERS): | $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
	touch $(BROWSERS)

test: lint $(BROWSERS)
	$(COMPILE)
	$(BIN)/python -m pytest -q tests --ignore=tests/faults --ignore=tests/load

# 50 ingesting and 200 reading clients against a real `mediakeep serve` for
# MEDIAKEEP_LOAD_DURATION seconds (60); writes reports/load-latest.json and .md.
test-load: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m pytest -q tests/load

# Object store and database restarted, workers SIGKILLed, the local disk filled, while
# jobs run (real SeaweedFS, PostgreSQL, tmpfs); writes reports/faults-latest.json and .md.
test-faults: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m pytest -q tests/faults

test-fast: $(STAMP)
	$(COMPILE)
	$(BIN)/python -m pytest -q -x tests --ignore=tests/faults --ignore=tests/load

bench: $(STAMP)
	$(COMPILE)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mediakeep-data
