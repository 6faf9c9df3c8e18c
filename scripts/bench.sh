#!/usr/bin/env bash
# The benchmark (make bench, make bench-quick): starts PostgreSQL and Redis if needed,
# then runs scripts/bench.py with the given options (--size S|L, --quick, --help).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
install_deps
ensure_postgres
ensure_redis
exec "$VENV/bin/python" scripts/bench.py "$@"
