# Two entry points: `make demo` and `make test`. Both build .venv from scratch if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-env bench-engine clean cl-env cl-test

# Peer simulators for benchmarks/bench_engine.py (Brian2 >= 2.10 and NEST need Python >= 3.12 with
# numpy >= 2; Brian2 2.9, all that Python 3.11 gets, is broken with numpy 2.4)
BENCH_PYTHON ?= $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python3
BENCH_VENV := .venv-bench

# Python 3.12 venv for cl-sdk (Cortical Labs; Python >= 3.12, CC BY-NC 4.0: never in .venv): pyenv's
# 3.12 where there is one, else python3.12 on PATH; without either the cl-sdk tests skip.
PYTHON312 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3) $(shell command -v python3.12 2>/dev/null))
CL_VENV := .venv-cl
CL_STAMP := $(CL_VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU torch first, pinned: an unpinned torch would pull gigabytes of CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Never fails the build: without Python 3.12 (or when the install fails) it says so in one line.
cl-env:
	@if [ -z "$(PYTHON312)" ]; then echo "cl-env: no Python 3.12 found (pyenv or python3.12): cl-sdk tests will be skipped"; \
	else $(MAKE) --no-print-directory $(CL_STAMP) || { echo "cl-env: building $(CL_VENV) failed: cl-sdk tests will be skipped"; rm -rf $(CL_VENV); }; fi

# cl-sdk and the torch-free parts only (organoid_sim itself without its dependencies: no torch)
$(CL_STAMP): pyproject.toml
	$(PYTHON312) -m venv $(CL_VENV)
	$(CL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CL_VENV)/bin/python -m pip install --quiet cl-sdk==1.0.0 numpy numba safetensors h5py pytest
	$(CL_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(CL_STAMP)

test: $(STAMP) cl-env
	# the one-way layer contracts of pyproject.toml first: a new back-arrow fails here
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q

cl-test: $(STAMP) cl-env
	$(PY) -m pytest -q tests/test_cl_sdk.py

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
	rm -rf $(VENV) $(CL_VENV) demo_out .pytest_cache
