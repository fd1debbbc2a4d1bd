# The two commands of the README. Both do all the set-up they need, in the active Python.
#   make quickstart   installs ladder (and a CPU torch if none is installed), runs the quickstart
#   make test         installs ladder with its test and training extras, runs the whole test suite
PYTHON ?= python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# One torch thread: on a small shared CPU, torch's default thread pool oversubscribes the cores
# and tiny-model training runs several times slower (measured: sft 272 s vs 41 s on 2 cores).
export OMP_NUM_THREADS ?= 1

.PHONY: setup browser quickstart test

setup:
	@# A torch already present (e.g. a CUDA build) is kept; otherwise pin 2.13.0, whose CPU wheel
	@# these machines carry locally (an unpinned torch from PyPI pulls ~4 GB of CUDA libraries).
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	@$(PYTHON) -m pip install -q -e ".[train,dev]"

# The report is checked in a real headless browser; Debian's chromium (root + apt needed).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1 \
	  || echo "note: could not install chromium (needs root and apt); the browser tests will be skipped"

quickstart: setup
	$(PYTHON) -m ladder.cli run configs/quickstart.yaml

test: setup browser
	$(PYTHON) -m pytest -q
