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

test: setup
	$(PY) -m pytest -n $(WORKERS) --dr-profile=$(PROFILE) tests scenarios

drill: setup-drill
	$(PY) -m reports.drill --dr-profile=$(PROFILE)

bench: setup
	$(PY) -m benchmarks

RUNS ?= 10
repeat: setup
	bash scripts/repeat.sh $(RUNS) $(PROFILE) $(WORKERS)

# Every break of tests/breaks against its scenario alone (tests/ not collected): the detection table.
detection: setup
	$(PY) scripts/detection.py

lint: setup
	.venv/bin/ruff check bridge chaos environment fixtures reports scenarios tests benchmarks scripts
	.venv/bin/ruff format --check bridge chaos environment fixtures reports scenarios tests benchmarks scripts
	.venv/bin/mypy

clean:
	rm -rf allure-results reports/html reports/out reports/bench reports/evidence .run
