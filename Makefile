# kcpsock: every target installs what it needs first (a project-local .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest -q

.PHONY: all test lint typecheck layers unit vectors property integration interop demo bench clean venv

all: test

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Everything CI runs.
test: lint typecheck layers
	$(PYTEST) tests

lint: $(STAMP)
	$(PY) -m ruff check kcpsock tests tools

typecheck: $(STAMP)
	$(PY) -m mypy --strict kcpsock

layers: $(STAMP)
	$(PY) tools/check_layers.py

unit: $(STAMP)
	$(PYTEST) tests/unit

vectors: $(STAMP)
	$(PYTEST) tests/vectors

property: $(STAMP)
	$(PYTEST) tests/property

integration: $(STAMP)
	$(PYTEST) tests/integration

interop: $(STAMP)
	$(PYTEST) tests/interop

# The main job: a loopback transfer over KCP with FEC and encryption, live figures.
demo: $(STAMP)
	$(PY) -m kcpsock demo

# Benchmarks; figures go into BENCHMARKS.md by hand, with the command shown there.
bench: $(STAMP)
	$(PY) tools/bench_core.py
	$(PY) tools/bench_codec.py
	$(PY) tools/simrtt.py
	$(PY) tools/bench.py

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis tests/interop/.build
