# kcpsock: every target installs what it needs first (a project-local .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The modules mypyc compiles (setup.py's COMPILED) and the C helpers (its NATIVE); edited,
# they are rebuilt in place.
COMPILED_SOURCES := kcpsock/segment.py kcpsock/kcp.py kcpsock/inbound.py kcpsock/gf256.py kcpsock/fec.py kcpsock/codec.py \
	kcpsock/replay.py kcpsock/updater.py kcpsock/transport.py kcpsock/session.py kcpsock/listener.py \
	$(wildcard kcpsock/*.c)
COMPILED := $(VENV)/.compiled-stamp
# `make test`, `make` and `make compiled` fail if the compiled core does not build, with
# mypyc's or the compiler's errors (set 0 on a machine without a C compiler); other targets
# fall back to pure Python with a warning.
REQUIRE_COMPILED ?= $(if $(filter test all compiled,$(or $(MAKECMDGOALS),all)),1,0)
# Succeeds when every compilable module runs compiled (the stamp is only touched then,
# so a build that fell back is retried, and `make compiled` is never a silent no-op).
IS_COMPILED = KCPSOCK_PURE= $(PY) -c 'import sys, kcpsock; from kcpsock._accel import COMPILABLE, NATIVE; sys.exit(kcpsock.compiled_modules() != COMPILABLE or kcpsock.native_modules() != NATIVE)' 2>/dev/null
PYTEST := $(PY) -m pytest -q

.PHONY: all test lint typecheck layers unit vectors property integration interop compat demo bench clean venv compiled

all: test

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)
	@if $(IS_COMPILED); then touch $(COMPILED); fi

# The compiled core (mypyc, see README "Compiled core"), rebuilt in place when its sources change.
compiled: $(COMPILED)

$(COMPILED): $(STAMP) setup.py $(COMPILED_SOURCES)
	KCPSOCK_REQUIRE_COMPILED=$(REQUIRE_COMPILED) $(PY) setup.py -q build_ext --inplace
	@if $(IS_COMPILED); then touch $(COMPILED); else \
	  echo "compiled: running pure Python (see the warnings above); the next make retries"; fi

# Everything CI runs.
test: lint layers compiled
	KCPSOCK_REQUIRE_COMPILED=$(REQUIRE_COMPILED) $(PYTEST) tests
	$(MAKE) --no-print-directory compat

# The oldest supported Python (3.9) and the newest the machine has (3.12 or
# later), when there are such (pyenv's here), each on a second venv built pure
# (KCPSOCK_PURE=1): every layer in pure Python, as `test` runs them compiled
# (interop excepted: the compiled run covers it); on 3.9 also mypy --strict
# for 3.9 (mypy 2 targets 3.10 and later, so `typecheck` cannot; that venv
# gets mypy 1.x).  (pyenv's shims exist even for versions that are not
# selected: try each candidate and keep the first that really runs as the
# version wanted.)
PYTHON39 ?= $(shell for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.9*/bin/python3 2>/dev/null) $$(command -v python3.9 2>/dev/null); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 9))' >/dev/null 2>&1 && echo "$$p" && break; done)
# Newest first (version order); a free-threaded build (3.13t) is not one CI tests.
PYTHON_NEWEST ?= $(shell for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.*/bin/python3 2>/dev/null | sort -rV) \
	$$(for v in 3.14 3.13 3.12; do command -v python$$v; done 2>/dev/null); do \
	"$$p" -c 'import sys, sysconfig; sys.exit(sys.version_info[:2] < (3, 12) or bool(sysconfig.get_config_var("Py_GIL_DISABLED")))' \
	>/dev/null 2>&1 && echo "$$p" && break; done)
# its venv is named after its version (.venv313), so a newer Python gets a new one
VENV_NEWEST = .venv$(if $(PYTHON_NEWEST),$(shell $(PYTHON_NEWEST) -c 'import sys; print("%d%d" % sys.version_info[:2])'))
COMPAT_TESTS := tests/unit tests/vectors tests/property tests/integration
compat:
ifeq ($(strip $(PYTHON39)),)
	@echo "compat: no Python 3.9 on this machine, skipped"
else
	KCPSOCK_PURE=1 $(MAKE) --no-print-directory venv PYTHON=$(PYTHON39) VENV=.venv39
	.venv39/bin/python -m mypy --strict --python-version 3.9 kcpsock tests tools setup.py
	KCPSOCK_PURE=1 .venv39/bin/python -m pytest -q -p no:cacheprovider $(COMPAT_TESTS)
endif
ifeq ($(strip $(PYTHON_NEWEST)),)
	@echo "compat: no Python 3.12 or newer on this machine, skipped"
else
	KCPSOCK_PURE=1 $(MAKE) --no-print-directory venv PYTHON=$(PYTHON_NEWEST) VENV=$(VENV_NEWEST)
	KCPSOCK_PURE=1 $(VENV_NEWEST)/bin/python -W error -c "import kcpsock"
	KCPSOCK_PURE=1 $(VENV_NEWEST)/bin/python -m pytest -q -p no:cacheprovider -W error::DeprecationWarning $(COMPAT_TESTS)
endif

# The checks .pre-commit-config.yaml runs: ruff, ruff format, mypy --strict.
lint: $(STAMP)
	$(PY) -m ruff check kcpsock tests tools setup.py
	$(PY) -m ruff format --check kcpsock tests tools setup.py
	$(MAKE) --no-print-directory typecheck

typecheck: $(STAMP)
	$(PY) -m mypy --strict kcpsock tests tools setup.py

layers: $(STAMP)
	$(PY) tools/check_layers.py

unit: $(COMPILED)
	$(PYTEST) tests/unit

vectors: $(COMPILED)
	$(PYTEST) tests/vectors

property: $(COMPILED)
	$(PYTEST) tests/property

integration: $(COMPILED)
	$(PYTEST) tests/integration

interop: $(COMPILED)
	$(PYTEST) tests/interop

# The main job: a loopback transfer over KCP with FEC and encryption, live figures.
demo: $(COMPILED)
	$(PY) -m kcpsock demo

# Benchmarks; figures go into BENCHMARKS.md by hand, with the command shown there.
bench: $(COMPILED)
	$(PY) tools/bench_core.py
	$(PY) tools/bench_codec.py
	$(PY) tools/count_codec.py
	$(PY) tools/simrtt.py
	$(PY) tools/bench.py

clean:
	rm -rf $(VENV) *.egg-info build *.so kcpsock/*.so .mypy_cache .ruff_cache .pytest_cache .hypothesis tests/interop/.build
