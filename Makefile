# The two commands a new user types:  make demo   |   make test
# Both create .venv from the pinned lock when it is missing (or when the lock changed).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
TARGET ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# rules call the `g4g` command line and dvc calls `snakemake`: both come from the venv
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-fast lint bench gpu-check clean-results venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@echo ">> creating $(VENV) from requirements.lock (first run only)"
	@tools/check-disk $(VENV)   # 7.1 GiB for the venv (torch's CUDA wheels) + pip's downloads: say so up front
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# this machine's pip.conf lists extra local indexes that lack most packages: pip warns once per
	@# package and per index, hundreds of lines that would bury a real error; only those lines are dropped
	set -o pipefail; $(BIN)/python -m pip install -q --no-cache-dir --no-deps -r requirements.lock 2>&1 \
	  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: venv
	$(BIN)/snakemake --cores $(CORES) $(TARGET)
	$(BIN)/snakemake --cores $(CORES) $(TARGET) --report results/report.html
	@$(BIN)/g4g show-table results/table1.csv results/table2.csv
	@$(BIN)/g4g fingerprints
	@echo "report: $(abspath results/report.html)"

test: venv   # the whole suite, end-to-end tests included (README, "Contributing")
	$(BIN)/python -m pytest -ra tests

test-fast: venv   # everything but the `slow` end-to-end tests: the loop after each change
	$(BIN)/python -m pytest -ra -m "not slow" tests

lint: venv   # ruff (config in pyproject.toml) and Snakemake's own linter
	$(BIN)/ruff check g4g tests tools
	$(BIN)/snakemake --lint

bench: venv   # every benchmark, printed (never asserted): preparation, training, inference + metrics
	$(BIN)/python -m g4g.bench.prep
	$(BIN)/python -m g4g.bench.train
	$(BIN)/python -m g4g.bench.infer

gpu-check:   # on a CUDA machine: CUDA tests, paper-scale training and 1080p inference figures (tools/gpu-check)
	tools/gpu-check run

clean-results:
	rm -rf results logs benchmarks .snakemake
