.PHONY: demo test check lint types format lock clean

demo:  ## install and run the service with a demo estate (SQLite, tasks in-process)
	./scripts/demo.sh

test:  ## install and run the whole suite on PostgreSQL and Redis, with coverage
	./scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

types:
	.venv/bin/mypy levy config

check: test lint types  ## lint, types and tests: run before every commit

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

lock:  ## re-pin requirements.lock after editing requirements.in
	python3 -m venv /tmp/levy-lock && /tmp/levy-lock/bin/pip install -q -r requirements.in && /tmp/levy-lock/bin/pip freeze > requirements.lock && rm -rf /tmp/levy-lock

clean:
	rm -rf .venv demo.sqlite3 .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
