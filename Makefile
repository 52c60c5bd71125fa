# Two entry points for a fresh machine: `make run` and `make test`.
# Both create .venv with the interpreter found on PATH and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint layers bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/selfmod run --config config/selfmod.yaml

# The layer contracts run first: a wrong-way import fails here, naming both modules.
test: layers
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

layers: $(STAMP)
	$(BIN)/lint-imports

lint: layers
	$(BIN)/ruff check daemon envelope invariants snapshots demo tests bench
	$(BIN)/mypy

# matplotlib (the `bench` extra) draws the PNGs; `make test` does not need it
$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .selfmod
