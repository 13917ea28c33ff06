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
	@tools/check-disk $(VENV)   # 7.1 GiB for the venv (torch's CUDA wheels) + uv's cache: say so up front
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv (pinned in the lock) installs the lock: 40 s from PyPI with a cold cache, 3 s from its cache
	@# (~/.cache/uv, hard links), against 5.5 min for pip, which unpacks torch's 7 GiB every time
	$(BIN)/python -m pip install -q --no-deps "$$(grep '^uv==' requirements.lock)" 2>&1 \
	  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	@# --compile-bytecode and compileall: .pyc files written once, here. Where PYTHONDONTWRITEBYTECODE is set (it is
	@# on the machines CI runs on) no process writes them, and each of the suite's hundreds of Python processes
	@# compiled torch, scipy, snakemake... from source: 9.3 CPU-s to import the stages' libraries against 3.6 with
	@# .pyc, and a clean clone's make test took 22 min 52 s against 16-18 min in a venv that had them. 30 s here.
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m compileall -q -j 0 g4g
	touch $@

demo: venv
	$(BIN)/snakemake --cores $(CORES) $(TARGET)
	$(BIN)/snakemake --cores $(CORES) $(TARGET) --report results/report.html
	@$(BIN)/g4g show-table results/table1.csv results/table2.csv results/table_cross.csv
	@$(BIN)/g4g fingerprints
	@echo "report: $(abspath results/report.html)"

# four pytest-xdist workers on two cores, a module at a time, in the order tests/conftest.py gives: the two
# SLURM modules mostly wait on the scheduler, so two more workers use the CPU meanwhile
TEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -ra -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=10

test: venv   # the whole suite, end-to-end tests included (README, "Contributing")
	$(PYTEST) tests

test-fast: venv   # everything but the `slow` tests (end to end, learning runs): the loop after each change
	$(PYTEST) -m "not slow" tests

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
