# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv in the repo and install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: demo test lint schemas benchmark clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aeinspect demo

# -n auto: one pytest worker per core; the slow tests mostly wait on servers and subprocesses
test: $(STAMP)
	$(PY) -m pytest -q -n auto

lint: $(STAMP)
	$(VENV)/bin/ruff check .

schemas: $(STAMP)
	$(PY) -m data_contracts.export

benchmark: $(STAMP)
	$(PY) benchmarks/quality.py

clean:
	rm -rf .aeinspect
