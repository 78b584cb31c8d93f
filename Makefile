# The two entry points of the README: `make all` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Offline mirror of the raw data; `make all MIRROR=` fetches from upstream.
MIRROR ?= ../shared/data
# Extra project variables, e.g. VARS="--vars.config cnn"
VARS ?=
# The embedded backbone needs no network; set 0 to let a Hugging Face name download.
HF_HUB_OFFLINE ?= 1
export HF_HUB_OFFLINE

ifneq ($(MIRROR),)
SOURCES := --vars.wnut16_source $(MIRROR)/wnut16 --vars.wnut17_source $(MIRROR)/wnut17 \
	--vars.stsb_source $(MIRROR)/stsb-multi-mt
endif

.PHONY: all test

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch pinned and first: the CPU build on this disk; unpinned, pip takes a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

all: $(BIN)/.installed
	$(BIN)/python -m spacy project run all . $(SOURCES) $(VARS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest tests -v --durations=10
