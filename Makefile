# Frugal: `make run` starts the product, `make test` runs the tests. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
export DJANGO_SETTINGS_MODULE := apps.frugal.settings

.PHONY: install install-test install-bench run test lint format bench chromium clean lock

# Lock files (requirements/*.txt, made by `make lock` from requirements/*.in) pin every package
# with its hash; each is installed --no-deps, so nothing unpinned gets in.
LOCKED := $(PIP) install -q --no-deps --require-hashes -r

$(VENV)/.installed: requirements/base.txt requirements/torch-cpu.txt requirements/models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(LOCKED) requirements/torch-cpu.txt
	$(LOCKED) requirements/base.txt
	$(LOCKED) requirements/models.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements/test.txt
	$(LOCKED) requirements/test.txt
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-test requirements/bench.txt
	$(LOCKED) requirements/bench.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test chromium

install-bench: $(VENV)/.installed-bench

# Regenerate the lock files after editing requirements/*.in (needs the package registry).
lock:
	PYTHON=$(PYTHON) requirements/lock.sh

# Debian's Chromium for the browser tests; never a downloaded browser.
chromium:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) ; } || \
	  echo "chromium not installed: browser tests will be skipped"

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py load_demo
	$(PY) manage.py runstack --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install-test lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
