# The README's two commands are `make run` (set up + demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip options for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: install test test-fast run clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the project's ranges then accept it and pip never swaps in another build
	$(BIN)/python -m pip install --quiet -c constraints.txt $(TORCH_PIP_ARGS) torch torchvision
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,export]'
	touch $(STAMP)

# The demo: build the offline assets once (cached in .demo/), predict with the shipped config, score it.
# overwrite: a second `make run` replaces the demo's own results instead of refusing the reused output dir.
# XDG_CACHE_HOME keeps every cache the demo touches (anomalib's, matplotlib's) inside .demo/.
run: $(STAMP)
	$(BIN)/anomalib-folder demo build --dir .demo
	XDG_CACHE_HOME=$(CURDIR)/.demo/cache $(BIN)/anomalib predict --config configs/folder.yaml --trainer.callbacks.init_args.overwrite true
	$(BIN)/anomalib-folder demo score --dir .demo --output_dir inference_results_demo

# TEST_WORKERS parallel pytest processes (pytest-xdist), each with its share of the cores; more workers
# than cores only adds memory (about 2 GB each). loadscope: a test file's tests stay on one worker, so
# its module fixtures (a prediction run each) are made once; the longest files are handed out first
# (no-loadscope-reorder keeps tests/conftest.py's order). A worker that dies ends the run, naming the
# test it was running: xdist's loadscope can wait forever for the work of a worker it replaced.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --max-worker-restart 0

# the tests without a model and without the CLI in a subprocess: seconds
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
