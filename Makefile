# cdphub: `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install setup run test lint format bench worker beat clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(INSTALLED)

# Database (embedded PostgreSQL unless DATABASE_URL is set), roles, dev users, demo data.
setup: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py setup_roles
	$(PY) manage.py seed_demo
	$(PY) manage.py ensure_dev_superuser

run: setup
	$(PY) manage.py runserver 127.0.0.1:8000

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m tests.bench

worker: install
	$(VENV)/bin/celery -A cdphub worker --loglevel=info

beat: install
	$(VENV)/bin/celery -A cdphub beat --loglevel=info

clean:
	rm -rf $(VENV) var/static .pytest_cache .ruff_cache
