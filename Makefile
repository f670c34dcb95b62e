# Two entry points: `make demo` and `make test`. Both build .venv from scratch if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-env bench-engine clean

# Peer simulators for benchmarks/bench_engine.py (Brian2 >= 2.10 and NEST need Python >= 3.12 with
# numpy >= 2; Brian2 2.9, all that Python 3.11 gets, is broken with numpy 2.4)
BENCH_PYTHON ?= $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python3
BENCH_VENV := .venv-bench

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

bench-env:
	$(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet "brian2>=2.10" "cython>=3.0,<3.1.4" setuptools nest-simulator

bench-engine: $(STAMP)
	$(PY) benchmarks/bench_engine.py --peer-python $(BENCH_VENV)/bin/python

clean:
	rm -rf $(VENV) demo_out .pytest_cache
