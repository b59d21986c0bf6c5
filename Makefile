# One command runs the main job, one runs the tests; both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1

.PHONY: run test install data lint viz mlflow-ui clean

$(BIN)/kedro: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/kedro

data: install
	$(BIN)/python -m nuclei_pipeline.fetch_data

run: data
	$(BIN)/kedro run $(KEDRO_ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks

viz: install
	$(BIN)/kedro viz run --no-browser

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

clean:
	rm -rf $(VENV) build .pytest_cache
