# Two entry points for a fresh machine with Python 3.11+ and make: `make demo` and `make test`.
# While editing: `make check` (lint and the quick tests on SQLite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint install install-test serve bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## Install, migrate the embedded SQLite database, load the demo brand and serve on 127.0.0.1:8000.
demo: install
	$(BIN)/siyu demo

serve: install
	$(BIN)/siyu serve

## ruff's rules, ruff's formatting and mypy (configured in pyproject.toml). All three run, so one
## pass shows every complaint; the target fails if any of them does.
lint: install-test
	@status=0; \
	echo "== ruff check"; $(BIN)/ruff check --output-format=concise src tests bench || status=1; \
	echo "== ruff format --check"; $(BIN)/ruff format --check src tests bench || status=1; \
	echo "== mypy"; $(BIN)/mypy || status=1; \
	if [ $$status -ne 0 ]; then echo "lint failed: fix the above (ruff format and ruff check --fix do most of it)"; fi; \
	exit $$status

## Lint, then the whole suite on two workers (PostgreSQL too when SIYU_TEST_DATABASE_URL is set).
test: lint
	$(BIN)/python -m pytest -n 2

## The edit-test loop: lint, then every test not marked slow or browser, on SQLite only, stopping at the
## first failure.
check: lint
	env -u SIYU_TEST_DATABASE_URL $(BIN)/python -m pytest -m "not slow and not browser" -x

bench-quick: install-test
	for b in bench/*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) var
