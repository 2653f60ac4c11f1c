# Two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest pytest-django42 demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	touch node_modules/.installed

test: $(STAMP) node_modules/.installed lint typecheck pytest pytest-django42

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy django_experience tests

pytest: $(STAMP) node_modules/.installed
	$(BIN)/pytest

# The oldest supported Django (LTS) in a virtualenv of its own; browser tests run once, above.
VENV42 := .venv-django42
STAMP42 := $(VENV42)/.installed

$(STAMP42): pyproject.toml
	$(PYTHON) -m venv $(VENV42)
	$(VENV42)/bin/python -m pip install --quiet --upgrade pip
	$(VENV42)/bin/python -m pip install --quiet -e '.[dev]' 'django>=4.2,<4.3'
	touch $(STAMP42)

pytest-django42: $(STAMP42) node_modules/.installed
	$(VENV42)/bin/pytest -m "not browser"

demo: $(STAMP)
	@if [ -x example_project/run_demo.sh ]; then exec example_project/run_demo.sh; \
	else echo "The example project is not built yet."; exit 1; fi

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Benchmarks run on demand (ARGS, e.g. ARGS="middleware --quick"); `python -m benchmarks -h`.
bench: $(BENCH_STAMP) node_modules/.installed
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) $(VENV42) node_modules .mypy_cache .ruff_cache .pytest_cache
