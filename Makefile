# fleet — the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all build install test lint demo bench bench-wal chaos clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install build: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check fleet tests benchmarks
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check fleet tests benchmarks

demo: $(STAMP)
	$(BIN)/fleet demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_wal.py

bench-wal: $(STAMP)
	$(BIN)/python benchmarks/bench_wal.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis .demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
