# fieldlab: `make repro` runs the main job, `make test` runs the tests. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
IMAGE ?= fieldlab
DVC_CACHE ?= $(abspath .dvc/cache)
BIN := $(VENV)/bin
# Columns of `make exps` (dvc anchors each pattern at the start of the column name): the default predictor's
# error at base and 2x (eval_sr.json: default), the operator alone at base (base.rel_l2), the INR fit's R2 and
# slope, and the params experiments usually vary; 182 columns on the published run (tests/test_exps_width.py keeps it
# within 200). Seconds vary 15-25 % run to run: compare them with `dvc metrics diff` or `dvc plots diff`.
EXP_COLUMNS ?= Experiment|default.base.rel_l2$$|default.x2.rel_l2$$|base.rel_l2$$|final_r2|^slope|model.backbone|model.prior.kind|train.epochs|train.lr|inr.model|inr.field_name
STAMP := $(VENV)/.fieldlab-installed
# glibc keeps large FFT buffers mapped instead of re-mapping them every step (see README, "Speed").
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup bench-setup repro results exps test smoke lint format explore docker-build docker-train clean distclean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

setup: $(STAMP) ## create .venv and install fieldlab with its dev tools (idempotent)
	@mkdir -p data/raw

bench-setup: setup ## also install the peers the benchmarks in bench/ compare against (optuna, neuraloperator, ...)
	$(BIN)/python -m pip install -q -e ".[dev,bench]"

repro: setup ## run the whole DVC pipeline (the main job)
	$(BIN)/dvc repro

results: setup ## the results from metrics/ (rewrites the blocks of README.md, the headline, and docs/results.md)
	$(BIN)/fieldlab report --readme README.md --docs docs/results.md

exps: setup ## dvc exp show, headline metrics and the params experiments change (fits 200 columns)
	$(BIN)/dvc exp show --drop '.*' --keep '$(EXP_COLUMNS)'

test: setup ## ruff + the fast test suite + the docstring examples of src/fieldlab
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q --doctest-modules src/fieldlab tests

smoke: setup ## run the whole pipeline on a tiny grid in a throw-away copy of the repo
	bash .ci/smoke

lint: setup ## ruff and hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint docker/Dockerfile docker/Dockerfile.cpu

format: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

explore: setup ## a 2-block x 4-iteration exploration study on a tiny budget (dvc exp run of inr_block)
	$(BIN)/fieldlab explore --blocks 2 --iters 4 --out experiments/explore-tiny --resume \
	  explore.time_budget_s=20 "explore.ranges.total_steps=[100,1000]"
	$(BIN)/dvc exp list --name-only

docker-build: ## build the CUDA image (needs a Docker engine)
	docker build -f docker/Dockerfile -t $(IMAGE):cuda .

docker-train: docker-build ## run `dvc repro` in the CUDA image on all GPUs
	docker run --rm --gpus all --ipc=host \
	  -v $(CURDIR):/workspace -v $(DVC_CACHE):/workspace/.dvc/cache \
	  -w /workspace $(IMAGE):cuda dvc repro

clean: ## remove caches and the smoke copies (keeps .venv, data and DVC outputs)
	rm -rf .pytest_cache .ruff_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV)
