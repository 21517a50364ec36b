# cdphub: `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install setup run test browser lint format bench fuzz worker beat clean

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

# One process (no autoreloader), so Ctrl-C or SIGTERM also stops the embedded database cleanly.
run: setup
	$(PY) manage.py runserver --noreload 127.0.0.1:8000

test: install browser sdks
	$(VENV)/bin/pytest

# Debian's chromium for the browser tests (Playwright drives it; it downloads no browser).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "chromium is missing and cannot be installed without root: browser tests skip"; exit 0; fi; \
	  echo "installing chromium (apt-get) for the browser tests"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	    || echo "chromium could not be installed: browser tests skip (and fail under CI=true)"; }

# The browser SDKs the browser tests include as a website does (analytics.js, RudderStack's),
# exact versions from tests/browser/sdks/package-lock.json; reinstalled when the lock changes.
SDKS := tests/browser/sdks
.PHONY: sdks
sdks:
	@command -v npm >/dev/null 2>&1 || { \
	  echo "npm is missing: the browser SDK tests skip (and fail under CI=true)"; exit 0; }; \
	[ $(SDKS)/node_modules/.package-lock.json -nt $(SDKS)/package-lock.json ] || { \
	  echo "installing the browser SDKs (npm ci) for the browser tests"; \
	  cd $(SDKS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
	    || echo "the browser SDKs could not be installed: their tests skip (and fail under CI=true)"; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks that use the project database need its tables; the others build their own.
bench: install
	$(PY) manage.py migrate --noinput
	$(PY) -m tests.bench

# The API against its OpenAPI schema for longer than the test suite's run (schemathesis: every
# operation, FUZZ_EXAMPLES per operation, fuzzing and stateful tests repeated for FUZZ_SECONDS).
FUZZ_EXAMPLES ?= 50
FUZZ_SECONDS ?= 900
fuzz: install
	CDPHUB_FUZZ_MAX_EXAMPLES=$(FUZZ_EXAMPLES) CDPHUB_FUZZ_MAX_TIME=$(FUZZ_SECONDS) \
	  $(VENV)/bin/pytest -p no:cacheprovider tests/cdphub/test_api_schema.py

# Every workload's queue, or those given: make worker QUEUES=ingest,refresh
worker: install
	$(VENV)/bin/celery -A cdphub worker --loglevel=info $(if $(QUEUES),-Q $(QUEUES))

beat: install
	$(VENV)/bin/celery -A cdphub beat --loglevel=info

clean:
	rm -rf $(VENV) var/static .pytest_cache .ruff_cache
