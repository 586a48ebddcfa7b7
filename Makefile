# Fresh machine: `make demo` (main job) or `make test` (the test suite). Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test demo bench lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=15

demo: setup
	$(BIN)/nnunet-ext demo --workdir demo_output

bench: setup
	$(BIN)/python benchmarks/bench_tubed_skeleton.py

lint: setup
	$(BIN)/ruff check .
