# smsoffice — the two quick-start commands are `make run` and `make test`.
# Needs only python3.11 (or PYTHON=...) and make; everything else goes into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run test setup lint typecheck format benchmarks clean

# The stamp is rebuilt when pyproject.toml changes, so a pull that adds a
# dependency reinstalls on the next make run/test.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	$(PY) -m smsoffice.devenv

run: setup
	$(PY) manage.py migrate --no-input
	$(PY) manage.py createcachetable
	$(PY) manage.py seed_demo
	$(PY) manage.py sync_schedules
	@echo ""
	@echo "  smsoffice admin: http://$(HOST):$(PORT)/admin/   (Ctrl-C stops the server and the worker)"
	@echo ""
	$(PY) -m smsoffice.runall --host $(HOST) --port $(PORT)

# Two passes: everything but the `serial` tests on TEST_WORKERS processes
# (pytest-xdist; each its own test database and Redis db), then the `serial`
# ones (real workers, subprocesses, racing threads) alone in one process.
# Exit code 5 is "nothing selected" (PYTEST_ARGS naming one file, say).
TEST_WORKERS ?= 2
test: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -p no:xdist -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy with django-stubs on providers/ (settings in pyproject.toml [tool.mypy]).
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy providers/

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every script in benchmarks/ (each prints its figures next to the physical limit).
benchmarks: $(VENV)/.installed
	@set -e; for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .hypothesis
