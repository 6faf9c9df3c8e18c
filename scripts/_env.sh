# Shared by the scripts: a virtualenv installed from the lock file, and the services.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"

install_deps() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv in .venv"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.levy-lock.sha256"
  local want
  want="$(sha256sum requirements.lock | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing dependencies from requirements.lock"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
    echo "$want" > "$stamp"
  fi
  install_assets
}

# The browser assets the pages serve (htmx) and the browser tests inject (axe-core):
# pinned in package-lock.json, installed into node_modules/ by `npm ci`.
install_assets() {
  local stamp="$ROOT/node_modules/.levy-lock.sha256"
  local want
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "npm is needed to install the pages' assets (apt-get install -y npm)" >&2; return 1
    fi
    echo "==> installing browser assets from package-lock.json (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
  fi
}

# Debian's Chromium for the browser tests (never a browser download).
ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then return 0; fi
  echo "==> installing Debian's chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  echo "==> starting PostgreSQL"
  local cluster
  cluster="$(pg_lsclusters -h | awk 'NR==1{print $1, $2}')"
  if [ -z "$cluster" ]; then echo "no PostgreSQL cluster found (pg_lsclusters)" >&2; return 1; fi
  # shellcheck disable=SC2086
  pg_ctlcluster --skip-systemctl-redirect $cluster start || pg_ctlcluster $cluster start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 1; done
  echo "PostgreSQL did not become ready" >&2; return 1
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
  echo "==> starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/levy.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0; sleep 1; done
  echo "Redis did not become ready" >&2; return 1
}
