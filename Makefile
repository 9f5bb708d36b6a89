# Two commands for a fresh machine:
#   make study   set up .venv and run the default study (studies/sentiment.yaml)
#   make test    set up .venv and run the test suite
# On a machine without an NVIDIA GPU, torch is the CPU build (no CUDA downloads).

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup browser study lint test test-floors constraints clean-storage

# hpsearch's dependencies at the versions the tests passed with (docker/constraints.txt, which the
# image uses too): a new release on PyPI cannot change what the tests run on. To move to newer
# versions: pip install -U them in the venv, run the tests, then `make constraints`.
$(BIN)/hpsearch: pyproject.toml docker/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q torch; \
	else \
		$(BIN)/pip install -q torch==2.13.0 || \
		$(BIN)/pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/pip install -q -c docker/constraints.txt -e ".[test,postgres,mysql]"
	@touch $@

setup: $(BIN)/hpsearch

study: setup
	$(BIN)/hpsearch run --study sentiment

# The dashboard tests drive a real headless Chromium (Debian's chromium and chromium-driver).
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

# The rules of pyproject.toml's [tool.ruff], and its format, with the venv's ruff; its import
# contracts ([tool.importlinter]: layers, no torch in the light packages, no import cycle).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

# Two test processes (pytest-xdist), a module per process at a time so a module's fixtures are built
# once: most tests wait on subprocesses, databases and heartbeats, so two share 2 cores well. The
# modules go out in tests/conftest.py's order (the longest first), not xdist's most-tests-first.
# Three processes were slower on 2 cores (2026-12-07, clean clone: 47m06s, 77 min of user CPU,
# against 38m54s and 60 min with two): the trials they start contend for the same two cores.
# TEST_PROCESSES=0 runs the suite in this process.
TEST_PROCESSES ?= 2
test: setup browser lint
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

# The floors in pyproject.toml, verified: a second venv with every direct dependency at exactly its
# floor (uv's lowest-direct resolution, pinned by tools/floors.py), then the whole suite.
FLOORS := .venv-floors
test-floors: browser
	rm -rf $(FLOORS)
	$(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/pip install -q --upgrade pip uv
	$(FLOORS)/bin/pip install -q torch==2.13.0
	$(PYTHON) tools/floors.py pyproject.toml > $(FLOORS)/floors.txt
	$(FLOORS)/bin/uv pip install -q --python $(FLOORS)/bin/python --resolution lowest-direct \
		-c $(FLOORS)/floors.txt -e ".[test,postgres,mysql]"
	$(FLOORS)/bin/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

# docker/constraints.txt, which pins every pip install of the Dockerfile: hpsearch[postgres,mysql]
# and everything it needs, at the versions installed in the venv the tests pass in.
constraints: setup
	$(BIN)/python tools/constraints.py > docker/constraints.txt

clean-storage:
	rm -rf storage/hpsearch.db* storage/artifacts storage/cache
