#!/usr/bin/env bash
# Lighthouse on the pages (scripts/lighthouse.py): installs the pinned Lighthouse of
# tools/lighthouse (npm ci) and Debian's Chromium if missing, starts PostgreSQL and Redis.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
install_deps
ensure_chromium
ensure_postgres
ensure_redis
stamp="$ROOT/tools/lighthouse/node_modules/.levy-lock.sha256"
want="$(sha256sum tools/lighthouse/package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Lighthouse from tools/lighthouse/package-lock.json (npm ci)"
  npm ci --prefix tools/lighthouse --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
exec "$VENV/bin/python" scripts/lighthouse.py "$@"
