.PHONY: demo test check lint types format lock clean loadtest alerts-check deploy-rehearsal migrations-check bench bench-quick bench-compare lighthouse

demo:  ## install and run the service with a demo estate (SQLite, tasks in-process)
	./scripts/demo.sh

test:  ## install and run the whole suite on PostgreSQL and Redis, with coverage
	./scripts/test.sh

# The data sets `make bench` runs, in order: `make bench BENCH_SIZE=L` runs L only.
BENCH_SIZE ?= S L
# Any other option of scripts/bench.py, e.g. BENCH_ARGS='--cache-db 12 --broker-db 13 --port 8400'.
BENCH_ARGS ?=

bench:  ## the benchmark of docs/performance.md on real HTTP: data set S, then L (BENCH_SIZE=S or L for one)
	@set -e; for size in $(BENCH_SIZE); do ./scripts/bench.sh --size $$size $(BENCH_ARGS); done
	@if [ "$(BENCH_SIZE)" = "S L" ]; then echo; ./scripts/bench.sh --compare; fi

bench-quick:  ## the benchmark on data set S with fewer requests (under 5 minutes)
	./scripts/bench.sh --quick $(BENCH_ARGS)

bench-compare:  ## the p95 of each operation at S and L side by side, from results/bench-S.json and bench-L.json
	./scripts/bench.sh --compare

lighthouse:  ## Lighthouse scores of every page on the demo estate, gunicorn as deployed; fails below web.md's targets
	./scripts/lighthouse.sh --check

loadtest:  ## the "bill day" load test: gunicorn (production mode), a worker and Locust on data set S
	./scripts/loadtest.sh

lint:  ## ruff, and the import contracts of pyproject.toml (the apps' layers: docs/developer.md)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports --no-logo

types:
	.venv/bin/mypy levy config

deploy-rehearsal:  ## deploy the previous release, upgrade to HEAD, back up and restore, roll back (docs/runbook.md)
	./scripts/deploy_rehearsal.sh

migrations-check:  ## fail on a missing migration; apply, unapply and reapply every migration on a scratch PostgreSQL database
	./scripts/migrations_check.sh

alerts-check:  ## check the Prometheus config, alert rules and dashboard queries; run the alerts' unit tests (installs promtool if missing)
	./scripts/check_alerts.sh

check: test lint types  ## lint, types and tests: run before every commit

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

lock:  ## re-pin requirements.lock after editing requirements.in
	python3 -m venv /tmp/levy-lock && /tmp/levy-lock/bin/pip install -q -r requirements.in && /tmp/levy-lock/bin/pip freeze > requirements.lock && rm -rf /tmp/levy-lock

clean:
	rm -rf .venv demo.sqlite3 .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov .import_linter_cache
