#!/usr/bin/env bash
# The "bill day" load test (make loadtest): data set S in its own database, gunicorn in
# production mode and one Celery worker on loopback, then loadtest/locustfile.py with
# Locust, headless. Exits non-zero if any request failed or the money does not add up.
# Every setting below can be overridden from the environment; see docs/performance.md,
# "Load test".
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"

USERS="${LOADTEST_USERS:-50}"
SPAWN_RATE="${LOADTEST_SPAWN_RATE:-2}"
RUN_TIME="${LOADTEST_RUN_TIME:-120s}"
STOP_TIMEOUT="${LOADTEST_STOP_TIMEOUT:-30}"
PORT="${LOADTEST_PORT:-8600}"
PG="${LOADTEST_PG:-postgres://root@127.0.0.1:5432}"
DB="${LOADTEST_DATABASE:-levy_load_s}"
TEMPLATE="${LOADTEST_TEMPLATE:-levy_bench_S}"
REDIS="${LOADTEST_REDIS:-redis://127.0.0.1:6379}"
CACHE_DB="${LOADTEST_CACHE_DB:-14}"
BROKER_DB="${LOADTEST_BROKER_DB:-15}"
WORKER_CONCURRENCY="${LOADTEST_WORKER_CONCURRENCY:-1}"
export LOADTEST_BILL_AMOUNT="${LOADTEST_BILL_AMOUNT:-5000.00}"
export LOADTEST_BILL_TITLE="${LOADTEST_BILL_TITLE:-Bill day levy}"

case "$DB" in
  levy_load_*) ;;
  *) echo "LOADTEST_DATABASE must start with levy_load_ (the test drops and recreates it)" >&2; exit 2 ;;
esac

OUT="$ROOT/results/loadtest_$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
PIDS=()

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "==> process $pid did not stop in 30 s: killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Start "$@" in its own process group (so stop_all reaches its children), logging to $1.
start_group() {
  local log="$1"
  shift
  setsid "$@" >"$log" 2>&1 &
  PIDS+=("$!")
}

install_deps
ensure_postgres
ensure_redis

export DATABASE_URL="$PG/$DB"
# The server's environment, as deployed behind a TLS proxy.
export DJANGO_ENV=production
DJANGO_SECRET_KEY="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(64))')"
export DJANGO_SECRET_KEY
LEVY_PROVIDER_SECRETS_KEY="$("$VENV/bin/python" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
export LEVY_PROVIDER_SECRETS_KEY
export DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost
# The server listens on 127.0.0.1 only: its metrics are private.
export LEVY_METRICS_PRIVATE=1
export REDIS_URL="$REDIS/$CACHE_DB"
export CELERY_BROKER_URL="$REDIS/$BROKER_DB"
export LEVY_BIND="127.0.0.1:$PORT"
# Every simulated resident signs in from 127.0.0.1; only failed sign-ins are counted
# per address (none here). The estate limit counts everyone together: raise it and the
# general per-caller limit so the limiter still runs but never refuses the test.
# Per-resident limits (acknowledge, pay) keep their defaults: each resident pays once.
export LEVY_RATE_USER="${LEVY_RATE_USER:-1000000/min}"
export LEVY_RATE_ESTATE="${LEVY_RATE_ESTATE:-1000000/min}"
# Each response carries Server-Timing; the locustfile reports the server's own time.
export LEVY_SERVER_TIMING="${LEVY_SERVER_TIMING:-1}"
# The email channel runs (deliveries are written and claimed) but sends nothing.
export EMAIL_BACKEND="${EMAIL_BACKEND:-django.core.mail.backends.dummy.EmailBackend}"
# Static files collected as in production, but outside the project's staticfiles/.
export DJANGO_STATIC_ROOT="${DJANGO_STATIC_ROOT:-$ROOT/results/.loadtest-static}"

psql_admin() { psql "$PG/postgres" -v ON_ERROR_STOP=1 -qtAc "$1"; }

echo "==> data set S in $DB"
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$TEMPLATE'")" = "1" ]; then
  # CREATE DATABASE … TEMPLATE fails while someone else is connected to the template.
  for attempt in $(seq 1 30); do
    if "$VENV/bin/python" manage.py generate_dataset --size S --template "$TEMPLATE" --from-template \
      >"$OUT/dataset.log" 2>&1; then
      break
    fi
    if grep -q "^recreated $DB from template" "$OUT/dataset.log"; then
      # Cloned, but the row counts that follow failed: a template saved before the
      # latest migrations. The migrate below brings the copy up to date.
      echo "    (the template predates the current schema; migrating the copy)"
      break
    fi
    if [ "$attempt" = 30 ] || ! grep -q "is being accessed by other users" "$OUT/dataset.log"; then
      cat "$OUT/dataset.log" >&2
      exit 1
    fi
    sleep 2
  done
  head -1 "$OUT/dataset.log"
else
  echo "    template $TEMPLATE not found: building data set S and saving it as the template (a minute or two)"
  psql_admin "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)"
  psql_admin "CREATE DATABASE \"$DB\""
  "$VENV/bin/python" manage.py migrate --noinput >"$OUT/migrate.log"
  "$VENV/bin/python" manage.py generate_dataset --size S --template "$TEMPLATE" >"$OUT/dataset.log"
  grep "^saved template" "$OUT/dataset.log" || true
fi
"$VENV/bin/python" manage.py migrate --noinput >"$OUT/migrate.log"
if [ ! -f "$DJANGO_STATIC_ROOT/staticfiles.json" ]; then
  "$VENV/bin/python" manage.py collectstatic --noinput -v 0
fi
"$VENV/bin/python" -m loadtest.billday fund --amount "$LOADTEST_BILL_AMOUNT"

echo "    data ready in ${SECONDS} s (outside the measurement)"

echo "==> Redis databases $CACHE_DB (cache) and $BROKER_DB (broker): emptied"
redis-cli -u "$REDIS_URL" flushdb >/dev/null
redis-cli -u "$CELERY_BROKER_URL" flushdb >/dev/null

echo "==> starting gunicorn on $LEVY_BIND and one Celery worker (logs in ${OUT#"$ROOT"/})"
start_group "$OUT/gunicorn.log" "$VENV/bin/gunicorn" -c config/gunicorn.conf.py config.wsgi
start_group "$OUT/worker.log" "$VENV/bin/celery" -A config worker -Q notifications_high,notifications,levy \
  -c "$WORKER_CONCURRENCY" -n "loadtest-$$@%h" -l info

ready=""
for _ in $(seq 1 60); do
  for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a server process exited during start-up:" >&2
      tail -20 "$OUT/gunicorn.log" "$OUT/worker.log" >&2
      exit 1
    fi
  done
  if curl -fsS "http://$LEVY_BIND/readyz" >/dev/null 2>&1 && grep -q " ready\." "$OUT/worker.log"; then
    ready=1
    break
  fi
  sleep 1
done
if [ -z "$ready" ]; then
  echo "gunicorn or the worker was not ready within 60 s" >&2
  tail -20 "$OUT/gunicorn.log" "$OUT/worker.log" >&2
  exit 1
fi
echo "    /readyz: $(curl -fsS "http://$LEVY_BIND/readyz")"

echo "==> locust: $USERS users (spawn rate $SPAWN_RATE/s) for $RUN_TIME against http://$LEVY_BIND"
echo "    $(nproc) CPUs; load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
set +e
"$VENV/bin/locust" -f loadtest/locustfile.py --headless --host "http://$LEVY_BIND" \
  --users "$USERS" --spawn-rate "$SPAWN_RATE" --run-time "$RUN_TIME" --stop-timeout "$STOP_TIMEOUT" \
  --only-summary --csv "$OUT/locust" --html "$OUT/report.html" 2>&1 | tee -i "$OUT/locust.log"
locust_status="${PIPESTATUS[0]}"
set -e
echo "    load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "==> the money, from the database"
set +e
"$VENV/bin/python" -m loadtest.billday check --title "$LOADTEST_BILL_TITLE" --stats "$OUT/locust_stats.csv"
check_status=$?
set -e

stop_all
timeouts="$(grep -c "WORKER TIMEOUT" "$OUT/gunicorn.log" || true)"
if [ "$timeouts" != "0" ]; then echo "gunicorn killed $timeouts workers that timed out (see gunicorn.log)"; fi
echo "==> results in ${OUT#"$ROOT"/}: locust_stats.csv, locust_failures.csv, report.html, the logs"
if [ "$locust_status" != "0" ]; then
  echo "LOAD TEST FAILED: some requests failed (locust exit status $locust_status; see locust_failures.csv)" >&2
  exit 1
fi
if [ "$check_status" != "0" ]; then
  echo "LOAD TEST FAILED: the money check failed" >&2
  exit 1
fi
echo "load test passed: no failed requests"
