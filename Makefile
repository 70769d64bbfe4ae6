# The two commands of the README: `make drill` (the DR drill and its Allure report)
# and `make test` (the tests). Each runs the idempotent set-up first.
PY := .venv/bin/python
PROFILE ?= ci
WORKERS ?= 2

.PHONY: setup setup-drill test drill drill-shard durations monthly-restore bench repeat detection lint clean

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

# A profile with measured durations (scripts/durations/) runs through scripts/shard.py: its workers, and
# the longest scenarios first on every worker; the others run as before.
# BRIDGE=node (or cmd:<command line>) runs the drill against that bridge; unset: the in-process Python bridge.
# DRILL_WORKERS=N overrides the profile's drill workers (a machine with more or fewer cores).
drill: setup-drill
	@if [ -f scripts/durations/$(PROFILE).json ]; then \
		DR_BRIDGE="$(BRIDGE)" $(PY) scripts/shard.py drill --profile $(PROFILE) $(if $(DRILL_WORKERS),--workers $(DRILL_WORKERS)); \
	else \
		DR_BRIDGE="$(BRIDGE)" $(PY) -m reports.drill --dr-profile=$(PROFILE); \
	fi

# One shard of the drill, as one job of the quarterly-dr matrix runs it: make drill-shard SHARD=2 SHARDS=3
SHARDS ?= 3
SHARD ?= 1
drill-shard: setup-drill
	$(PY) scripts/shard.py drill --profile $(PROFILE) --shards $(SHARDS) --shard $(SHARD) $(if $(DRILL_WORKERS),--workers $(DRILL_WORKERS))

# Re-record the measured durations of PROFILE from the JUnit XML its drills wrote.
durations: setup
	$(PY) scripts/shard.py record --profile $(PROFILE) reports/out/junit-$(PROFILE)*.xml

# The monthly restore drill against the regions configured in BRIDGE_BACKUP_* (see docs/BACKUP.md).
monthly-restore: setup
	$(PY) scripts/monthly_restore.py $(if $(SEED),--seed $(SEED))

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
