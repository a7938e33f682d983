# Quick start: `make demo` and `make test` each set up .venv/ on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# torch is pinned so pip takes the CPU wheel on this machine's disk instead of a multi-GB CUDA build.
TORCH   := torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: demo test bench lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH)"
	$(BIN)/python -m pip install --quiet --no-deps "zennit==0.5.1"  # test reference; its torchvision is stubbed
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cnnlens demo --out out/demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/python tools/check_architecture.py
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out
