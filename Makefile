# fleet — the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all build install test test-random lint sizes demo bench bench-scale bench-shards bench-wal chaos compose-check clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install build: $(STAMP)

# fleet's bytecode, compiled once: with PYTHONDONTWRITEBYTECODE set, every controller, worker
# and CLI process the tests and benchmarks start would otherwise compile fleet again (≈ 0.2 s
# of each start; a pip-installed fleet ships its .pyc files).
BYTECODE := $(BIN)/python -m compileall -q fleet

test: $(STAMP)
	$(BIN)/ruff check fleet tests benchmarks scripts
	$(BIN)/mypy fleet
	$(BYTECODE)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# the suite in a shuffled order (pytest-randomly): it must not depend on the order of its tests
SEED ?= 1
test-random: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m pytest -n 2 --dist loadfile -p randomly --randomly-seed=$(SEED)

lint: $(STAMP)
	$(BIN)/ruff check fleet tests benchmarks scripts
	$(BIN)/mypy fleet

# the largest modules, classes and functions of fleet/, and any over 400 / 250 / 50 lines
sizes: $(STAMP)
	$(BIN)/python scripts/code_sizes.py

demo: $(STAMP)
	$(BYTECODE)
	$(BIN)/fleet demo

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m pip install -q --no-deps 'arq>=0.26'  # pyproject.toml's bench extra says why
	touch $(BENCH_STAMP)

# fleet against Celery, Huey, Dramatiq, arq and RQ on this machine, like for like
# (docs/performance.md), about 20 min; a full run rewrites the tables in README.md and docs/performance.md.
# BENCH_ARGS="--quick" for a short try (results/peers-quick.*, docs left alone).
# bench-scale: executors, 1M pending jobs, recovery.
bench: $(BENCH_STAMP)
	$(BYTECODE)
	$(BIN)/python benchmarks/bench_peers.py $(BENCH_ARGS)

bench-scale: $(BENCH_STAMP)
	$(BYTECODE)
	$(BIN)/python benchmarks/bench_scale.py $(BENCH_ARGS)

# bench-shards: no-op drain with 1, 2 and 4 namespaces (BENCH_ARGS="--redis-url URL ...", or
# BENCH_ARGS=--cluster for a private Redis Cluster of 3 masters and 3 replicas).
bench-shards: $(BENCH_STAMP)
	$(BYTECODE)
	$(BIN)/python benchmarks/bench_shards.py $(BENCH_ARGS)

bench-wal: $(STAMP)
	$(BYTECODE)
	$(BIN)/python benchmarks/bench_wal.py

# Chaos: 20,000 jobs under process kills and stops, Redis emptied, lists deleted, rolled back
# and out of memory, and the controller's clock stepped (needs `apt-get install faketime` and
# cc, else that fault is left out); exits non-zero on any loss, double end, job dead without
# having run, or controller crash. CHAOS_ARGS="--seed 42 --jobs 5000 --faults del-ready,oom".
chaos: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m fleet.testing.chaos $(CHAOS_ARGS)

# docker-compose.yml brought up on a Docker engine of its own and checked end to end
# (docs/deploy.md): 1-1.5 min on a warm image cache, 4-6 min cold (debootstrap, builds).
compose-check:
	bash deploy/compose-check.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis .demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
