# Two entry points: `make demo` and `make test`. Both build .venv from scratch if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-env clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU torch first, pinned: an unpinned torch would pull gigabytes of CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	# the one-way layer contracts of pyproject.toml first: a new back-arrow fails here
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# Peer simulators for benchmarks/ (brian2 >= 2.10 needs Python 3.12 with numpy 2.4): .venv-bench
PYTHON312 ?= $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python3
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml
	$(PYTHON312) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet 'brian2>=2.10' 'cython>=3.0' 'h5py>=3.9'
	# NEST only where a wheel exists (optional peer)
	-$(BENCH_VENV)/bin/python -m pip install --quiet --only-binary=:all: nest-simulator
	touch $(BENCH_STAMP)

bench-env: $(BENCH_STAMP)

clean:
	rm -rf $(VENV) demo_out .pytest_cache
