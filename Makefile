# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

CATALOGS := $(patsubst %.po,%.mo,$(wildcard translations/*/LC_MESSAGES/messages.po))

.PHONY: run test test-fast lint lock install install-dev migrate bench clean translations-extract translations-compile browser-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs come from the lock files (every package pinned, with its hashes), never from the
# ranges in pyproject.toml; the project itself goes in last, without dependencies of its own.
# The stamp files re-run the install only when a lock file changes.
$(VENV)/.installed: requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed

# After changing the ranges in pyproject.toml: pin them again, for Python 3.11 and up on any
# platform (the image's Linux and a developer's laptop alike). Pins already in the lock are kept
# while they still fit; `make lock LOCK_ARGS=--upgrade` moves everything to the newest allowed.
LOCK_ARGS ?=
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' $(LOCK_ARGS)
lock: | $(BIN)/python
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet 'uv>=0.4,<1'
	$(UV_COMPILE) -o requirements.lock
	$(UV_COMPILE) --extra dev -o requirements-dev.lock

install: $(VENV)/.installed $(CATALOGS)
install-dev: $(VENV)/.installed-dev $(CATALOGS)

# Compiled catalogs are built, not committed: each follows its .po.
translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po | $(VENV)/.installed
	$(BIN)/pybabel compile --statistics -d translations -l $*

translations-compile: $(CATALOGS)

# After changing wording: collect every string again and merge it into each language's .po.
translations-extract: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_text --no-location --sort-output --project resetdesk -w 100 -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --ignore-obsolete -w 100

migrate: install
	$(FLASK) db upgrade

# `make run PORT=5001` serves on another port; emailed links follow it unless PUBLIC_BASE_URL
# is set (in the environment or .env), which always wins.
PORT ?= 5000
run: migrate
	@if [ -z "$$PUBLIC_BASE_URL" ] && ! grep -qs '^ *PUBLIC_BASE_URL=' .env; then \
		export PUBLIC_BASE_URL=http://localhost:$(PORT); \
	fi; \
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

test: install-dev browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit-run loop: SQLite only, no browser, no processes or servers started, on two
# processes (pytest-xdist): under a minute.
test-fast: install-dev
	TEST_DATABASE_URL= TEST_REDIS_URL= $(BIN)/python -m pytest -q -n 2 -m "not browser and not slow and not postgres and not redis" $(PYTEST_ARGS)

# The browser tests drive the system's Chromium (Debian's `chromium`) through Playwright's
# client, and check pages with axe-core from npm; without either they are skipped, saying why.
browser-deps:
	@if command -v npm >/dev/null 2>&1 && [ ! -f .browser/node_modules/axe-core/axe.min.js ]; then \
		npm install --silent --no-audit --no-fund --prefix .browser axe-core@4 || echo "axe-core could not be installed"; \
	fi

# Style, types, and known vulnerabilities in the locked packages. pip-audit reads each release's
# advisories from PyPI's JSON API: where that does not answer (a mirror that serves only the
# package index), it says it skipped rather than report "no known vulnerabilities" unchecked.
# --strict makes any package it could not look up an error.
AUDIT_PROBE := https://pypi.org/pypi/flask/3.0.0/json
lint: install-dev
	$(BIN)/ruff check service tests bench examples wsgi.py gunicorn.conf.py
	$(BIN)/mypy
	@if $(BIN)/python -c "import urllib.request; urllib.request.urlopen('$(AUDIT_PROBE)', timeout=5)" >/dev/null 2>&1; then \
		echo "$(BIN)/pip-audit --strict -r requirements.lock --require-hashes --disable-pip"; \
		$(BIN)/pip-audit --strict --progress-spinner off -r requirements.lock --require-hashes --disable-pip; \
	else \
		echo "pip-audit SKIPPED: PyPI's vulnerability data ($(AUDIT_PROBE)) does not answer from here"; \
	fi

# Every speed comparison and its table of ratios (bench/README.md); about 5 minutes, more with delivery.
# `make bench BENCH_ARGS=--quick` for a short smoke run, `BENCH_ARGS="--only request,signin"` for some.
BENCH_ARGS ?=
bench: install-dev
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis
