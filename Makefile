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
	$(PY) -m pip install --quiet -e ".[agents,dev,dashboard,slurm,postgres]"
	touch $(STAMP)

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

demo: install
	$(PY) -m shaping.cli lab examples/demo.toml

# The MLflow UI on the embedded store that labs write by default (loopback only, one worker; UI_PORT=5000 by
# default). MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no job runner and huey consumers (MLflow 3's GenAI jobs:
# about 10 processes, 2.5 GB, that we never use); the warning filter hides starlette's deprecation of the WSGI
# middleware that MLflow's app imports (not ours to fix).
ui: export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false
ui: export PYTHONWARNINGS := ignore:starlette.middleware.wsgi is deprecated
ui: install
	@echo "MLflow UI: http://127.0.0.1:$(or $(UI_PORT),5000)  (Ctrl-C to stop; MLflow 3 shows runs under 'Model training')"
	@$(VENV)/bin/mlflow server --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
		--default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(or $(UI_PORT),5000) --workers 1

# The live shaping dashboard of a lab (LAB=labs/demo by default).
LAB ?= labs/demo
dashboard: install
	$(PY) -m shaping.cli dashboard $(LAB)

bench: install
	$(PY) bench/tasks.py
	$(PY) bench/agents.py
	$(PY) bench/learning.py
	$(PY) bench/shaping.py
	$(PY) bench/policies.py
	$(PY) bench/loop.py
	$(PY) bench/cluster.py
	$(PY) bench/packs.py

# PsychRNN 1.0.0's task modules, only for side-by-side benchmarks; the project never depends on it.
# Its metadata (Requires-Dist: python-version (!="3.0*",...)) is rejected by pip >= 24.1, so an older pip, kept
# under .bench/pip, installs it with the project's Python; --no-deps skips its tensorflow requirement.
bench-psychrnn: install
	$(PY) -m pip install --quiet --target .bench/pip "pip<24.1"
	PYTHONPATH=.bench/pip $(PY) -m pip install --quiet --no-deps --upgrade --target .bench/psychrnn psychrnn==1.0.0
	@echo "PsychRNN 1.0.0 installed under .bench/psychrnn; bench/tasks.py picks it up automatically."

clean:
	rm -rf $(VENV) .bench build *.egg-info .pytest_cache
