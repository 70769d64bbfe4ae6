# The two commands of the README: `make drill` (the DR drill and its Allure report)
# and `make test` (the tests). Each runs the idempotent set-up first.
PY := .venv/bin/python
PROFILE ?= ci
WORKERS ?= 2

.PHONY: setup setup-drill test drill bench repeat lint clean

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

lint: setup
	.venv/bin/ruff check bridge chaos fixtures reports scenarios tests benchmarks
	.venv/bin/mypy

clean:
	rm -rf allure-results reports/html reports/out reports/bench reports/evidence .run
