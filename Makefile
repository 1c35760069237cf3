# The two commands of the README. Each creates .venv if needed and installs what it uses.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DEMO    ?= demo

.PHONY: demo test lint check-trt venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Main job on the embedded default: runtime install only (no torch), ONNX Runtime on CPU,
# the bundled model, a generated phantom series.
demo: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/edge-ich phantom --out $(DEMO)/phantom --cases 1 --seed 3 --slices 40
	$(BIN)/edge-ich run --series $(DEMO)/phantom/case_000/dicom --out $(DEMO)/result

# Tests: torch 2.13.0 (CPU build) first, then the project with its dev and train extras.
test: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,train]'
	$(BIN)/python -m pytest -q

# The habits that keep the house tidy: ruff (lint + format) over the tree, mypy over the runtime.
lint: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Our TensorRT code against the real TensorRT 10.3 and 11.4 Python bindings (downloaded once into
# .cache/check-trt): every TensorRT name present and not deprecated, mypy with trt typed. No GPU needed.
check-trt: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m tools.check_trt

clean:
	rm -rf $(DEMO) .pytest_cache
