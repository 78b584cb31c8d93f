# The two entry points of the README: `make all` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A local mirror of the raw data (../shared/data/README.md) where there is one;
# without it the files come from upstream (`make all MIRROR=` forces that).
MIRROR ?= $(if $(wildcard ../shared/data/wnut16/train),../shared/data,)
# absolute: tests hand it to projects in temporary directories
MIRROR := $(if $(MIRROR),$(abspath $(MIRROR)),)
# Extra project variables, e.g. VARS="--vars.seed 1 --vars.run wnut16-trf-seed1"
VARS ?=
# torch goes in first, pinned: the CPU build (a file on this project's build
# machines; elsewhere name PyTorch's CPU index, e.g.
# make all TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"),
# since a plain `pip install torch` takes a CUDA build of several GB
TORCH ?= torch==2.13.0
# The embedded backbone needs no network; set 0 to let a Hugging Face name download.
HF_HUB_OFFLINE ?= 1
export HF_HUB_OFFLINE
export TWNER_DATA := $(MIRROR)

ifneq ($(MIRROR),)
SOURCES := --vars.wnut16_source $(MIRROR)/wnut16 --vars.wnut17_source $(MIRROR)/wnut17 \
	--vars.stsb_source $(MIRROR)/stsb-multi-mt --vars.tweets_source $(MIRROR)/tweets-unlabeled --vars.tweets_ext .txt
endif

.PHONY: all multilingual ensemble test test-fast

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test,distill]"
	touch $@

RUN := $(BIN)/python -m spacy project run

# `spacy project run all` in parts: its two independent branches (the
# masked-LM adaptation; the embedder) side by side at a thread each, then
# `train` on both cores (the embedder's branch ends first, and a training step
# takes about two thirds of its one-thread time on two), then the rest.
PREPARE := convert stats pretrain-text pretrain train+dev
EMBEDDINGS := distill tune-head evaluate-embeddings
SHIP := assemble optimize evaluate package
steps = for step in $(1); do $(RUN) $$step . $(VARS) || exit 1; done
all: $(BIN)/.installed
	@test -n "$(MIRROR)" || echo "No data mirror at ../shared/data: fetching the raw files from upstream (needs the network)"
	$(RUN) assets . $(SOURCES) $(VARS) || { \
		echo "No data: no mirror at ../shared/data (MIRROR=$(MIRROR)) and the upstream URLs in project.yml could not be fetched."; exit 1; }
	mkdir -p logs
	@echo "embeddings branch (distill, evaluate-embeddings): logs/embeddings.log"
	export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; ( $(call steps,$(EMBEDDINGS)) ) > logs/embeddings.log 2>&1 & pid=$$!; \
	( $(call steps,$(PREPARE)) ); prepare=$$?; \
	wait $$pid; embeddings=$$?; \
	test $$embeddings -eq 0 || { tail -30 logs/embeddings.log; echo "the embeddings branch failed: logs/embeddings.log"; }; \
	test $$prepare -eq 0 -a $$embeddings -eq 0
	$(RUN) train . $(VARS)
	$(call steps,$(SHIP))

# xx_twner (not in `all`): the `multilingual` workflow after the assets; it
# reuses what `all` built where that is up to date (docs/multilingual.md)
multilingual: $(BIN)/.installed
	$(RUN) assets . $(SOURCES) $(VARS)
	$(RUN) multilingual . $(VARS)

# The fast tier (tiny random transformers, slices of the real data; under 3
# minutes on 2 cores), then the slow tier (the workflows on a slice, wheels in
# fresh venvs, a real server and browser; about 45 minutes).
# The ensemble package (not in `all`): after `make all` and `make multilingual`,
# whose pipelines (en_twner's and xx_twner's runs) it reuses (docs/usage.md)
ensemble: $(BIN)/.installed
	$(RUN) ensemble . $(VARS)

test: test-fast
	$(BIN)/python -m pytest tests -m slow -v --durations=15

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest tests -m "not slow" -v --durations=10
