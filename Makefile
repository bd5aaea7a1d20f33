# memsim — run `make help` for the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCENARIO ?= support-bot

.DEFAULT_GOAL := help
.PHONY: help setup run test bench lint format

help: ## Show the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'

setup: ## Create .venv and install memsim, the real components and the test tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of PyTorch first: an unpinned torch would pull the CUDA stack.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[real,dev]'
	# The example out-of-tree strategy, found through its entry point by the tests.
	$(BIN)/python -m pip install --quiet --no-deps -e examples/keyword_memory
	@$(BIN)/memsim --version
	@test -x /usr/bin/chromium || echo "note: the report.html browser test skips without Chromium; \
	to run it: apt-get install chromium"

run: ## Simulate SCENARIO (a name or a .toml path; default support-bot) into out/<its stem>/
	$(BIN)/memsim run $(SCENARIO) --out out/$(patsubst %.toml,%,$(notdir $(SCENARIO)))

test: ## Run the test suite (benchmarks excluded)
	$(BIN)/python -m pytest -q

bench: ## Speed and memory benchmarks; writes docs/benchmarks.md
	$(BIN)/python -m pytest -q -m bench -s

lint: ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
