# Two entry points for a fresh machine with Python 3.11+ and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test serve bench-quick clean

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

## Install with test extras and run the whole suite on two workers (PostgreSQL too when SIYU_TEST_DATABASE_URL is set).
test: install-test
	$(BIN)/python -m pytest -n 2

bench-quick: install-test
	for b in bench/*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) var
