# The two commands of the README: `make demo` runs the product end to end, `make test` the tests.
# Each bootstraps the virtualenv it needs; a second run reuses it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The TypeScript client's npm devDependencies (tsc, type definitions): tests/e2e/test_js_client.py.
JS_CLIENT_STAMP := clients/js/node_modules/.installed
# The AI SDK's and AG-UI's client packages, pinned: tests/e2e/test_protocol_clients.py.
PROTOCOL_CLIENTS_STAMP := tests/js/protocols/node_modules/.installed

.PHONY: demo up test lint typecheck unit e2e bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "agentstream needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

$(JS_CLIENT_STAMP): clients/js/package.json clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_CLIENT_STAMP)

$(PROTOCOL_CLIENTS_STAMP): tests/js/protocols/package.json tests/js/protocols/package-lock.json
	cd tests/js/protocols && npm ci --no-audit --no-fund --loglevel=error
	touch $(PROTOCOL_CLIENTS_STAMP)

demo: $(STAMP)
	$(PY) -m agentstream demo

up: $(STAMP)
	$(PY) -m agentstream up

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy schemas
	$(PY) -m mypy --ignore-missing-imports agent agentstream gateway worker

test: lint typecheck $(STAMP) $(JS_CLIENT_STAMP) $(PROTOCOL_CLIENTS_STAMP)
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest --ignore=tests/e2e

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
