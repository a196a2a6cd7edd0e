# Leg-fatigue risk scoring: decision support on synthetic data, not a diagnosis.
# Every target uses .venv (built on first use); `make help` lists them.

SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

export MLFLOW_TRACKING_URI ?= sqlite:///$(ROOT)/mlflow.db
export MLFLOW_DISABLE_TELEMETRY := true
export PYTHONHASHSEED := 0

N ?= 100000
SEED ?= 42
POPULATION ?= general
DATA ?= $(ROOT)/data/generated/intake_$(POPULATION)_n$(N)_seed$(SEED).parquet

.DEFAULT_GOAL := help
.PHONY: help setup data test lint bench demo clean train experiments evaluate ui score serve

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,spark]'
	@touch $(STAMP)

setup: $(STAMP) ## build .venv and install the package (editable, with the dev and spark extras)

data: $(STAMP) ## generate a synthetic data set (N=, SEED=, POPULATION=, DATA=)
	$(PY) -m pipeline generate --n $(N) --seed $(SEED) --population $(POPULATION) --out $(DATA)

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check pipeline tests
	$(VENV)/bin/ruff format --check pipeline tests

test: $(STAMP) lint ## lint, then the whole test suite
	$(PY) -m pytest -q

bench: $(STAMP) ## measure speed and memory (prints the figures quoted in the README)
	$(PY) -m pipeline.bench

demo: $(STAMP) ## the main job end to end on the embedded defaults
	$(PY) -m pipeline demo

EXPERIMENT ?= experiments/logistic_joint.yaml
train: $(STAMP) ## train EXPERIMENT= (default logistic_joint), log to MLflow, register (PROMOTE=1 forces champion)
	$(PY) -m pipeline train --experiment $(EXPERIMENT) $(if $(PROMOTE),--promote,)

experiments: $(STAMP) ## train every experiment in experiments/; the best on validation becomes champion
	$(PY) -m pipeline experiments

evaluate: $(STAMP) ## the champion on fresh general and older-cardiometabolic test sets (100k rows each)
	$(PY) -m pipeline evaluate

INPUT ?= data/examples/intake_sample.csv
OUTPUT ?= data/generated/scores.csv
MODEL ?=
score: $(STAMP) ## score INPUT= (intake CSV) into OUTPUT= (+ OUTPUT stem .rejects.csv); MODEL= URI or directory
	$(PY) -m pipeline score --input $(INPUT) --output $(OUTPUT) $(if $(MODEL),--model $(MODEL),)

UI_PORT ?= 5000
ui: $(STAMP) ## the MLflow UI (one light worker) on http://127.0.0.1:5000 over the embedded store (UI_PORT=)
	@echo "MLflow UI: open http://127.0.0.1:$(UI_PORT) (experiment leg-fatigue; Models tab: leg-fatigue-causes). Ctrl-C stops it."
	PATH="$(VENV)/bin:$$PATH" MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
		$(VENV)/bin/mlflow ui --host 127.0.0.1 --port $(UI_PORT) --workers 1 \
		--backend-store-uri "$(MLFLOW_TRACKING_URI)"

PORT ?= 5001
SERVE_MODEL ?= models:/leg-fatigue-causes@champion
serve: $(STAMP) ## serve the champion with `mlflow models serve` on http://127.0.0.1:5001 (PORT=, SERVE_MODEL=)
	@echo "Serving $(SERVE_MODEL) on http://127.0.0.1:$(PORT)/invocations (JSON or CSV; see README). Ctrl-C stops it."
	PATH="$(VENV)/bin:$$PATH" $(VENV)/bin/mlflow models serve -m "$(SERVE_MODEL)" --env-manager local \
		--host 127.0.0.1 --port $(PORT) --workers 1

clean: ## remove generated data, caches and the local MLflow store
	rm -rf data/generated data/cache mlruns mlflow.db reports .pytest_cache .ruff_cache
