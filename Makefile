# One-command set-up: every target bootstraps .venv by itself on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration bench bench-full clean

$(STAMP): pyproject.toml src/p2p_comm/shim.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# `p2p` started without `site` (-S): a third of each command's start-up (p2p_comm/shim.py).
	$(BIN)/python -m p2p_comm.shim
	# Bytecode up front: with PYTHONDONTWRITEBYTECODE set, every CLI run would recompile.
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/p2p demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

# Two workers (the machines have two cores), a test file per worker at a time: the suite is
# mostly waiting on real daemons and relays, so this halves its wall time.
test: lint typecheck $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile tests

# Under 5 minutes; bench-full adds the slow figures (the PoW-20 and 60/min stories): ~15 min.
bench: $(STAMP)
	$(BIN)/python -m bench

bench-full: $(STAMP)
	$(BIN)/python -m bench --full --json bench/results-full.json

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
