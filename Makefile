# Two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest pytest-django42 pytest-django6 pytest-postgres pytest-mysql demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	touch node_modules/.installed

test: $(STAMP) node_modules/.installed lint typecheck pytest pytest-django42 pytest-django6 pytest-postgres \
	pytest-mysql

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy django_experience tests benchmarks

pytest: $(STAMP) node_modules/.installed
	$(BIN)/pytest

# The first of the Python versions $(1) on PATH or through pyenv (empty when none).
find_python = $(shell for v in $(1); do \
	p=$$(command -v python$$v) && $$p -c '' 2>/dev/null && echo $$p && exit; \
	command -v pyenv >/dev/null || continue; \
	version=$$(pyenv versions --bare 2>/dev/null | grep "^$$v\." | tail -1); \
	[ -n "$$version" ] && [ -x "$$(pyenv prefix $$version)/bin/python" ] && \
	echo "$$(pyenv prefix $$version)/bin/python" && exit; done)

# The oldest supported Django (LTS) in a virtualenv of its own, on the oldest supported Python
# (3.10) when the machine has it, else on $(PYTHON); browser tests run once, above.
VENV42 := .venv-django42
STAMP42 := $(VENV42)/.installed
PYTHON42 ?= $(or $(call find_python,3.10),$(PYTHON))

$(STAMP42): pyproject.toml
	$(PYTHON42) -m venv --clear $(VENV42)
	$(VENV42)/bin/python -m pip install --quiet --upgrade pip
	$(VENV42)/bin/python -m pip install --quiet -e '.[dev]' 'django>=4.2,<4.3'
	touch $(STAMP42)

pytest-django42: $(STAMP42) node_modules/.installed
	$(VENV42)/bin/pytest -m "not browser"

# The newest Django (6.x) needs Python 3.12 or later: taken from PATH or pyenv when the machine
# has one; without one the run says so and the rest of `make test` goes on.
VENV6 := .venv-django6
STAMP6 := $(VENV6)/.installed
PYTHON6 ?= $(call find_python,3.12 3.13)

$(STAMP6): pyproject.toml
	$(PYTHON6) -m venv --clear $(VENV6)
	$(VENV6)/bin/python -m pip install --quiet --upgrade pip
	$(VENV6)/bin/python -m pip install --quiet -e '.[dev]' 'django>=6,<7'
	touch $(STAMP6)

ifeq ($(strip $(PYTHON6)),)
pytest-django6:
	@echo "Django 6 run skipped: no Python 3.12 or later on this machine."
else
pytest-django6: $(STAMP6) node_modules/.installed
	$(VENV6)/bin/pytest -m "not browser"
endif

# The suite once more on PostgreSQL, when EXPERIENCE_TEST_POSTGRES_URL names a server
# (postgres://user:password@127.0.0.1:5432/name; the user needs CREATEDB): the database that
# checks lengths, locks rows and plans queries as production sites do. Without one the run says
# so and the rest of `make test` goes on; EXPERIENCE_REQUIRE_POSTGRES=1 (CI) makes that an error.
ifeq ($(strip $(EXPERIENCE_TEST_POSTGRES_URL)),)
pytest-postgres:
	@if [ -n "$$EXPERIENCE_REQUIRE_POSTGRES" ]; then \
		echo "PostgreSQL run required, but EXPERIENCE_TEST_POSTGRES_URL is not set." >&2; exit 1; fi
	@echo "PostgreSQL run skipped: set EXPERIENCE_TEST_POSTGRES_URL to run the suite on PostgreSQL."
else
pytest-postgres: $(STAMP) node_modules/.installed
	EXPERIENCE_TEST_DATABASE_URL='$(EXPERIENCE_TEST_POSTGRES_URL)' $(BIN)/pytest -m "not browser"
endif

# And on MySQL or MariaDB, with the newest and the oldest supported Django, when
# EXPERIENCE_TEST_MYSQL_URL names a server (mysql://user:password@127.0.0.1:3306/name; the user
# may create databases): the database whose default collation ignores case and trailing spaces,
# and whose DDL is not transactional.
# Its driver is built on first use (Debian: libmariadb-dev, pkg-config); without a server the run
# says so and the rest of `make test` goes on; EXPERIENCE_REQUIRE_MYSQL=1 (CI) makes that an error.
MYSQL_STAMP := $(VENV)/.installed-mysql

$(MYSQL_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,test-mysql]'
	touch $(MYSQL_STAMP)

MYSQL_STAMP42 := $(VENV42)/.installed-mysql

$(MYSQL_STAMP42): $(STAMP42)
	$(VENV42)/bin/python -m pip install --quiet -e '.[dev,test-mysql]' 'django>=4.2,<4.3'
	touch $(MYSQL_STAMP42)

ifeq ($(strip $(EXPERIENCE_TEST_MYSQL_URL)),)
pytest-mysql:
	@if [ -n "$$EXPERIENCE_REQUIRE_MYSQL" ]; then \
		echo "MySQL run required, but EXPERIENCE_TEST_MYSQL_URL is not set." >&2; exit 1; fi
	@echo "MySQL run skipped: set EXPERIENCE_TEST_MYSQL_URL to run the suite on MySQL or MariaDB."
else
pytest-mysql: $(MYSQL_STAMP) $(MYSQL_STAMP42) node_modules/.installed
	EXPERIENCE_TEST_DATABASE_URL='$(EXPERIENCE_TEST_MYSQL_URL)' $(BIN)/pytest -m "not browser"
	@# Django 4.2 as well: its MySQL backend defaults to another charset and differs in DDL.
	EXPERIENCE_TEST_DATABASE_URL='$(EXPERIENCE_TEST_MYSQL_URL)' $(VENV42)/bin/pytest -m "not browser"
endif

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
	rm -rf $(VENV) $(VENV42) $(VENV6) node_modules .mypy_cache .ruff_cache .pytest_cache
