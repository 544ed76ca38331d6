# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

CATALOGS := $(patsubst %.po,%.mo,$(wildcard translations/*/LC_MESSAGES/messages.po))

.PHONY: run test test-fast lint install install-dev migrate bench clean translations-extract translations-compile browser-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp files re-run the install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed $(CATALOGS)
install-dev: $(VENV)/.installed-dev $(CATALOGS)

# Compiled catalogs are built, not committed: each follows its .po.
translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po | $(VENV)/.installed
	$(BIN)/pybabel compile --statistics -d translations -l $*

translations-compile: $(CATALOGS)

# After changing wording: collect every string again and merge it into each language's .po.
translations-extract: install
	$(BIN)/pybabel extract -F babel.cfg -k _l --no-location --sort-output --project resetdesk -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --ignore-obsolete

migrate: install
	$(FLASK) db upgrade

run: migrate
	$(FLASK) run --host 127.0.0.1 --port 5000

test: install-dev browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit-run loop: SQLite only, no browser, no processes or servers started; under a minute.
test-fast: install-dev
	TEST_DATABASE_URL= TEST_REDIS_URL= $(BIN)/python -m pytest -q -m "not browser and not slow and not postgres and not redis" $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check service tests bench wsgi.py gunicorn.conf.py
	$(BIN)/mypy

# The browser tests drive the system's Chromium (Debian's `chromium`) through Playwright's
# client, and check pages with axe-core from npm; without either they are skipped, saying why.
browser-deps:
	@if command -v npm >/dev/null 2>&1 && [ ! -f .browser/node_modules/axe-core/axe.min.js ]; then \
		npm install --silent --no-audit --no-fund --prefix .browser axe-core@4 || echo "axe-core could not be installed"; \
	fi

bench: install-dev
	$(BIN)/python bench/verify_timing.py

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis
