# skinnerbox: every target works on a fresh clone with only Python 3.10+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install test demo bench bench-psychrnn ui dashboard clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[agents,dev]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) -m shaping.cli lab examples/demo.toml

bench: install
	$(PY) bench/tasks.py
	$(PY) bench/agents.py
	$(PY) bench/policies.py

# PsychRNN 1.0.0 in a separate venv, only for side-by-side benchmarks; the project never depends on it.
bench-psychrnn: install
	$(PY) -m venv --system-site-packages .bench/psychrnn
	.bench/psychrnn/bin/python -m pip install --quiet --no-deps psychrnn==1.0.0
	@echo "PsychRNN installed under .bench/psychrnn; bench scripts pick it up automatically."

clean:
	rm -rf $(VENV) .bench build *.egg-info .pytest_cache
