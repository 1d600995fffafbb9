# Two entry points, each doing its own set-up on a fresh machine:
#   make run    validate the fused kernel on the device at hand and print a report
#   make test   run the test suite (CUDA when present, else Triton's interpreter on CPU)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench figures clean

# The environment sees the system's packages, so a machine that already has torch
# and Triton (a GPU machine) keeps them; elsewhere the CPU builds are installed.
$(BIN)/.ready: pyproject.toml setup.py requirements-cpu.txt Makefile
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q -r requirements-cpu.txt
	$(BIN)/pip install -q -e ".[test]"
	# The test runners themselves go into the venv even when the system has them, so an activated
	# venv's `pytest` runs this venv's Python.
	$(BIN)/pip install -q --force-reinstall --no-deps pytest pytest-benchmark hypothesis
	touch $@

run: $(BIN)/.ready
	$(BIN)/diffusion-kernels validate

test: $(BIN)/.ready
	$(BIN)/python -m pytest -q tests benchmarks --benchmark-disable

bench: $(BIN)/.ready
	$(BIN)/diffusion-kernels bench --out benchmarks/results

figures: $(BIN)/.ready
	$(BIN)/diffusion-kernels figures --out docs/figures

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
