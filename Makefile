# Fresh machine: `make demo` (main job), `make test` (the fast tier: a newcomer's first check, ~10 min on
# 2 cores) or `make test-all` (every test: what CI runs). All set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test test-all demo bench lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not full" --hypothesis-profile=fast --durations=15

test-all: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --hypothesis-profile=full --durations=25

demo: setup
	$(BIN)/nnunet-ext demo --workdir demo_output

bench: setup
	$(BIN)/python benchmarks/bench_tubed_skeleton.py

lint: setup
	$(BIN)/ruff check .

# Release files: sdist, then the wheel built from that sdist (what a user's pip builds), both checked by twine.
.PHONY: dist
dist: setup
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
