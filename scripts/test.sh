#!/usr/bin/env bash
# Install everything, start PostgreSQL and Redis if needed, run the whole suite with coverage.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
install_deps
ensure_chromium
ensure_postgres
ensure_redis
export DATABASE_URL="${DATABASE_URL:-postgres://root@127.0.0.1:5432/levy}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
echo "==> running the test suite on $DATABASE_URL"
exec "$VENV/bin/python" -m pytest --cov=levy --cov-report=term --cov-fail-under=90 "$@"
