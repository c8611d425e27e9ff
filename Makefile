# Two commands on a fresh machine: `make run` (the whole local system) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test lint check lock browser screenshots clean

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(PY) -m workers.devstack

# The browser test drives Debian's Chromium; install it when missing.
browser:
	@command -v chromium >/dev/null || scripts/install-chromium

test: $(STAMP) browser
	$(PY) -m pytest

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

lock:
	$(PY) -m pip install --quiet -r requirements.in
	{ echo "# Pinned from requirements.in with \`make lock\`. Install with pip install -r requirements.txt."; \
	  $(PY) -m pip freeze --exclude-editable; } > requirements.txt

clean:
	rm -rf $(VENV) var db.sqlite3*
