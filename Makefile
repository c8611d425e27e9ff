# Two commands on a fresh machine: `make run` (the whole local system) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test lint check lock browser clean

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
