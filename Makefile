# The two commands of the quick start: `make demo` and `make test`.
# Each creates (or reuses) the local virtual environment .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint docs install clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/octattn demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy

# The suite in TEST_WORKERS processes (pytest-xdist), one torch thread each: Inception-v4 at
# 75 px gains little from a second thread, and the suite's Python, I/O and subprocesses overlap.
# --dist loadgroup: the tests that write runs and ensembles (WRITES_RUNS in tests/conftest.py) take
# turns on one worker, so that their folders never fill the temporary disk together.
TEST_WORKERS ?= 2

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

# The manual's site: reference pages and tables regenerated from the code and results, then built strictly.
docs: $(STAMP)
	$(BIN)/python docs/generate.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "site built in site/ (open site/index.html)"

clean-venv:
	rm -rf $(VENV)
