# Two commands set everything up on a fresh machine with Python 3.11:
#   make run    install, migrate, start the web server and worker on 127.0.0.1:8000
#   make test   install, run every test (SQLite, PostgreSQL when DATABASE_URL
#               points at it, then the browser suite)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-e2e bench lint format clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	bin/serve

test: install lint
	@echo "== Test suite on SQLite"
	DATABASE_URL= $(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)
	@case "$$DATABASE_URL" in \
	  postgres*) echo "== Test suite on PostgreSQL ($$DATABASE_URL)"; \
	    $(PY) -m pytest -m "not e2e and not slow" $(PYTEST_ARGS) ;; \
	  *) echo "== DATABASE_URL does not point at PostgreSQL: PostgreSQL run skipped" ;; \
	esac
	$(MAKE) --no-print-directory test-e2e

test-unit: install
	DATABASE_URL= $(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

test-e2e: install
	bin/e2e-test

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) staticfiles test-artifacts
