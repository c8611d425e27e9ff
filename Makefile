# Two commands on a fresh machine: `make run` (the whole local system) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The locks (requirements/*.txt, hashed) are compiled from requirements/*.in by `make lock`.
LOCKS := requirements/runtime.txt requirements/dev.txt
# The venv is reinstalled when a lock changes: its stamp carries the locks' checksum.
STAMP := $(VENV)/.installed-$(shell cat $(LOCKS) | cksum | cut -d' ' -f1)

.PHONY: venv run test lint check lock browser screenshots clean

venv: $(STAMP)

$(STAMP): $(LOCKS)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(PY) -m workers.devstack

# The browser test drives Debian's Chromium; install it when missing.
browser:
	@command -v chromium >/dev/null || scripts/install-chromium

test: $(STAMP) browser
	$(PY) tests/run_sessions.py

# Pictures of the admin a person would want (the Jobs home, a job live, a run with its plan, a
# cover being made), taken by the browser tests; kept out of the repository.
screenshots: $(STAMP) browser
	SCREENSHOTS_DIR=$(CURDIR)/test-artifacts/screenshots $(PY) -m pytest -q -m browser \
	  tests/workers/test_browser.py tests/infra_tasks/terraform/test_browser.py \
	  tests/courses/test_browser.py
	@echo "screenshots in test-artifacts/screenshots/"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_DEBUG=true $(VENV)/bin/mypy .

check: lint
	DJANGO_DEBUG=true $(PY) manage.py makemigrations --check --dry-run

# pip-compile runs from its own venv (not .venv) against PyPI alone, whatever the machine's pip
# configuration says; it keeps every version already locked (move one with
# `make lock UPGRADE="--upgrade-package NAME"`). The development lock takes the runtime
# packages at their runtime pins.
LOCK_TOOLS ?= var/lock-tools
UPGRADE ?=
COMPILE := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links
LOCK_ENV := PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= \
	PIP_INDEX_URL=https://pypi.org/simple

lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) \
	  && $(LOCK_ENV) $(LOCK_TOOLS)/bin/pip install --quiet pip-tools==7.7.0; }
	cd requirements && $(LOCK_ENV) $(abspath $(LOCK_TOOLS))/bin/pip-compile $(COMPILE) $(UPGRADE) \
	  --output-file=runtime.txt runtime.in
	cd requirements && $(LOCK_ENV) $(abspath $(LOCK_TOOLS))/bin/pip-compile $(COMPILE) $(UPGRADE) \
	  --output-file=dev.txt dev.in

clean:
	rm -rf $(VENV) var db.sqlite3*
