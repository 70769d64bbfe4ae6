# The two commands of the README: `make drill` (the DR drill and its Allure report)
# and `make test` (the tests). Each runs the idempotent set-up first.
PY := .venv/bin/python
PROFILE ?= ci
WORKERS ?= 2

.PHONY: setup setup-drill test drill bench repeat detection lint clean

setup:
	@bash scripts/setup.sh test

setup-drill:
	@bash scripts/setup.sh drill

# The smoke subset against the Node twin: one outage shape, the rollback, one fault-schedule run.
NODE_SMOKE := "scenarios/test_cache_outage.py::test_reads_served_from_cache_and_writes_refused_when_database_down_shorter_than_ttl[proxy_down]" \
	scenarios/test_rollback_outage.py scenarios/test_fault_schedules.py

test: setup
	$(PY) -m pytest -n $(WORKERS) --dr-profile=$(PROFILE) tests scenarios
	$(PY) -m pytest -n $(WORKERS) --dr-profile=$(PROFILE) --bridge node $(NODE_SMOKE)

# BRIDGE=node (or cmd:<command line>) runs the drill against that bridge; unset: the in-process Python bridge.
drill: setup-drill
	DR_BRIDGE="$(BRIDGE)" $(PY) -m reports.drill --dr-profile=$(PROFILE)

bench: setup
	$(PY) -m benchmarks

RUNS ?= 10
repeat: setup
	bash scripts/repeat.sh $(RUNS) $(PROFILE) $(WORKERS) $(NODE_SMOKE)

# Every break of tests/breaks against its scenario alone (tests/ not collected): the detection table.
detection: setup
	$(PY) scripts/detection.py

lint: setup
	.venv/bin/ruff check bridge chaos environment fixtures reports scenarios tests benchmarks scripts
	.venv/bin/ruff format --check bridge chaos environment fixtures reports scenarios tests benchmarks scripts
	.venv/bin/mypy

clean:
	rm -rf allure-results reports/html reports/out reports/bench reports/evidence .run
