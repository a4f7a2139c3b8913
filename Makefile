# farm — set-up, demo, tests. `make demo` and `make test` work on a fresh machine.
# `make test STRICT=1` (as .ci/run does): tests the host cannot run (no bubblewrap, no Debian
# adb, no user namespaces) fail instead of being skipped, and so does `make system`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ifneq ($(STRICT),)
export FARM_STRICT_ENV := $(STRICT)
endif

.PHONY: setup system demo test test-fast lint format soak bench bench-run clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

system:
	bash scripts/setup-system.sh

setup: $(STAMP) system

demo: setup
	$(VENV)/bin/farm demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(PY) benchmarks/bench_parse.py
	$(PY) benchmarks/bench_lab.py
	$(PY) benchmarks/bench_run.py --quick

# farm run against bare `adb shell` loops on virtual labs of BENCH_PHONES (about 5 min on 2 cores).
BENCH_PHONES ?= 4,16,64
bench-run: setup
	$(PY) benchmarks/bench_run.py --phones $(BENCH_PHONES)

# Not part of `make test`: 12 virtual phones, random faults for SOAK_MINUTES (10), then checks.
soak: setup
	SOAK_MINUTES=$(SOAK_MINUTES) SOAK_SEED=$(SOAK_SEED) $(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
