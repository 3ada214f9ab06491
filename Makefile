# The two commands of the quick start: `make run` and `make test`.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
GRAPHIQL := gateway/graphql/static/graphiql.min.js
TYPED   := pipelines $(if $(wildcard projections/*.py),projections)

.PHONY: run test install services browser migrate lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

$(GRAPHIQL):
	@scripts/fetch-graphiql.sh

install: $(STAMP) $(GRAPHIQL)

services:
	@scripts/ensure-services.sh

migrate: install services
	$(VENV)/bin/banyan db migrate

run: migrate
	$(VENV)/bin/banyan up

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(TYPED)

browser:
	@scripts/ensure-chromium.sh

test: lint services browser
	$(PY) -m pytest

bench: install services
	$(PY) -m bench.foundation --quick
	$(PY) -m bench.projections --quick
	$(PY) -m bench.gateway --quick
	$(PY) -m bench.fanout --quick
	$(PY) -m bench.load --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
