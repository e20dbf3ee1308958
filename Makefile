# smsoffice — the two quick-start commands are `make run` and `make test`.
# Needs only python3.11 (or PYTHON=...) and make; everything else goes into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run test setup lint format check-deploy benchmarks clean

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

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

benchmarks: $(VENV)/.installed
	$(PY) benchmarks/quote.py
	$(PY) benchmarks/campaign.py
	@if echo "$$DATABASE_URL" | grep -q '^postgres'; then $(PY) benchmarks/credits.py; \
	else echo 'benchmarks/credits.py: skipped (set DATABASE_URL=postgres://...)'; fi

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .hypothesis
