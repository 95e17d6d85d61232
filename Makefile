# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NO_GCE_CHECK := True
export CLOUDSDK_CORE_CHECK_GCE_METADATA := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test lint typecheck unit demo stack bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s)" % sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

INFRA_TOOLS := $(VENV)/infra-tools/.requirements-sha256

# checkov and check-jsonschema live in their own venv: checkov's pins clash with python-hcl2's.
$(INFRA_TOOLS): tests/infra/requirements-tools.txt $(STAMP)
	$(PY) -c 'from tests.infra.tools import ensure_tools; ensure_tools()'

install: $(STAMP) $(INFRA_TOOLS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test: lint typecheck $(INFRA_TOOLS)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m local.demo

stack: $(STAMP)
	$(PY) -m local.stack

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache .hypothesis
