# `make run` and `make test` create .venv on first use; later runs reuse it.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: run observe test bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

# The main job: `n1v1 paper` starts a Ray head of its own, trains the demo model on the first run,
# then serves serve_config.yaml in paper mode; Ctrl-C stops all of it (and no other Ray).
# Other ports or options: make run ARGS="--ray-port 6390 --dashboard-port 8266 --metrics-port 8090"
run: $(STAMP)
	$(BIN)/n1v1 paper --config serve_config.yaml $(ARGS)

# Prometheus (Debian's `prometheus` package) with N1V1's alert rules, scraping the Ray of a running
# `make run` (found through var/paper.json); prints its URL; Ctrl-C stops it. Another port:
# make observe ARGS="--port 9091"
observe: $(STAMP)
	$(BIN)/n1v1 observe --config serve_config.yaml $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/backtest.py

lint: $(STAMP)
	$(BIN)/ruff check n1v1 tests bench jobs notebooks
	$(BIN)/ruff format --check n1v1 tests bench jobs notebooks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache out
