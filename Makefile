# The two commands of the quick start: `make run` and `make test`.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# the gateway's browser pages' files, fetched from the npm registry (scripts/fetch-npm-files.sh)
GRAPHIQL   := gateway/graphql/static
SWAGGER_UI := gateway/apidocs/static
SPECS      := build/specs
TYPED   := pipelines projections flows gateway auth discovery examples bench tests conftest.py

.PHONY: run test test-fast install services browser migrate lint bench clean cluster cluster-down drill-cluster

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

$(GRAPHIQL)/graphiql.min.js:
	@scripts/fetch-npm-files.sh $(GRAPHIQL) react@18.3.1/umd/react.production.min.js \
	  react-dom@18.3.1/umd/react-dom.production.min.js \
	  graphiql@3.9.0/graphiql.min.js graphiql@3.9.0/graphiql.min.css

$(SWAGGER_UI)/swagger-ui-bundle.js:
	@scripts/fetch-npm-files.sh $(SWAGGER_UI) swagger-ui-dist@5.36.0/swagger-ui-bundle.js \
	  swagger-ui-dist@5.36.0/swagger-ui.css swagger-ui-dist@5.36.0/favicon-32x32.png

$(SPECS)/3.0.0-without-$$id.json:
	@scripts/fetch-npm-files.sh $(SPECS) '@asyncapi/specs@6.11.1/schemas/3.0.0-without-$$id.json'

install: $(STAMP) $(GRAPHIQL)/graphiql.min.js $(SWAGGER_UI)/swagger-ui-bundle.js \
  $(SPECS)/3.0.0-without-$$id.json

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

test-fast: lint services browser  # every tier but the drills
	$(PY) -m pytest -m "not drill"

bench: install services
	$(PY) -m bench.foundation --quick
	$(PY) -m bench.projections --quick
	$(PY) -m bench.gateway --quick
	$(PY) -m bench.fanout --quick
	$(PY) -m bench.load --quick
	$(PY) -m bench.peers --quick

cluster:  # a local cluster on its own ports: see docs/scaling.md
	@scripts/cluster-up.sh

cluster-down:
	@scripts/cluster-down.sh

drill-cluster: install  # the platform on a fresh local cluster through a fault of each engine
	@scripts/cluster-up.sh
	@$(PY) -m tests.cluster_drill; status=$$?; scripts/cluster-down.sh >&2; exit $$status  # the verdict stays the last line

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
