# Two commands do all set-up on a fresh machine:  `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# The embedded default needs no hub; a user with one can override these.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export DVC_NO_ANALYTICS ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
# DVC stage commands say `python`: it must be the project's interpreter.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run repro test test-unit lint docs

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-assets.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -r requirements-assets.txt
	touch $@

run: install        ## the whole pipeline as a Prefect flow, ending in a registered model
	$(BIN)/python -m flows.pipeline

repro: install      ## the same stages through DVC alone
	$(BIN)/dvc repro

test: install      ## lint, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-unit: install  ## the tests marked unit: in one process (worker start-up costs more than it saves)
	$(BIN)/python -m pytest -m unit -n 0

lint: install
	$(BIN)/ruff check .

docs: install       ## the docs site into site/ (mkdocs serve to read it while editing)
	$(BIN)/mkdocs build --strict
