# Two commands on a fresh machine: `make run` (set up, run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build of torch; a bare `torch` would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install run test clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# one resolver pass; no byte-compiling of every installed file (Python compiles on import)
	$(BIN)/pip install -q --no-compile $(TORCH) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/bench run --tokenizers all --jobs 2 --threads-per-job 1

# two workers, one thread each (a test file stays on one worker): 7 min instead of 11 on 2 cores
test: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) results/quick-*
