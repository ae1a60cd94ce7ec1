# One set-up command, one main job, one test command (see README.md).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup test quick-bench

# CPU torch first and explicitly (the local 2.13.0 CPU wheel), then hopnet with its dev extras.
setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'

test:
	$(BIN)/python -m pytest -q

quick-bench:
	$(BIN)/python benchmarks/throughput.py --quick --json benchmarks/quick.json
