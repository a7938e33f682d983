# Quick start: `make demo` and `make test` each set up .venv/ on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# torch/torchvision are pinned to the builds pip finds on this machine's disk (no multi-GB download); users need
# only torch>=2.1 (torchvision and timm are optional extras).
TORCH   := torch==2.14.1 torchvision==0.29.1
STAMP   := $(VENV)/.installed

.PHONY: demo test bench lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]" $(TORCH)
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
