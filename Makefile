# The two commands of the README. Both do all the set-up they need, in the active Python.
#   make quickstart   installs ladder (and a CPU torch if none is installed), runs the quickstart
#   make test         installs ladder with its test, training and docs extras, runs the whole test suite
#   make docs         builds the docs site (docs/, mkdocs.yml) into site/, strict: any warning fails
# Both install the locked versions (constraints.txt); `make test-latest` tries the newest allowed.
PYTHON ?= python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# One torch thread: on a small shared CPU, torch's default thread pool oversubscribes the cores
# and tiny-model training runs several times slower (measured: sft 272 s vs 41 s on 2 cores).
export OMP_NUM_THREADS ?= 1

# The lock: the exact package set the suite last passed with (scripts/lock.py writes it). Used when
# the running Python is the one it was made with (its first line); otherwise the ranges in
# pyproject.toml decide, and setup says so.
LOCK := constraints.txt
LOCK_PY := $(shell sed -n '1s/^\# python \([0-9.]*\).*/\1/p' $(LOCK) 2>/dev/null)

.PHONY: setup setup-latest browser quickstart test test-latest lock docs

setup:
	@# A torch already present (e.g. a CUDA build) is kept; otherwise pin 2.13.0, whose CPU wheel
	@# these machines carry locally (an unpinned torch from PyPI pulls ~4 GB of CUDA libraries).
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	@if $(PYTHON) -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$(LOCK_PY)')"; then \
	  $(PYTHON) -m pip install -q -e ".[train,dev,docs]" -c $(LOCK); \
	else \
	  echo "note: $(LOCK) was made with python $(LOCK_PY); installing the newest versions pyproject.toml allows"; \
	  $(PYTHON) -m pip install -q -e ".[train,dev,docs]"; \
	fi

# The newest versions pyproject.toml allows (not the lock): the early warning for the next drift.
# Not in CI. When it passes, `make lock` records the new set.
setup-latest:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	@# torch stays as installed: an eager upgrade would swap a CPU build for ~4 GB of CUDA wheels.
	@$(PYTHON) -c "import torch; print('torch==' + torch.__version__)" > .torch-pin.txt
	@$(PYTHON) -m pip install -q -U --upgrade-strategy eager -e ".[train,dev,docs]" -c .torch-pin.txt
	@rm -f .torch-pin.txt

# The report is checked in a real headless browser; Debian's chromium (root + apt needed).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1 \
	  || echo "note: could not install chromium (needs root and apt); the browser tests will be skipped"

quickstart: setup
	$(PYTHON) -m ladder.cli run configs/quickstart.yaml

test: setup browser
	$(PYTHON) -m pytest -q

test-latest: setup-latest browser
	$(PYTHON) -m pytest -q

lock:
	$(PYTHON) scripts/lock.py

# The docs site. --strict: a warning (a broken link between pages, a page missing from the nav that
# the nav names) fails the build, as it does in the test suite (tests/test_docs.py).
docs:
	@$(PYTHON) -c "import mkdocs, material" 2>/dev/null || $(PYTHON) -m pip install -q -e ".[docs]" -c $(LOCK)
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict
