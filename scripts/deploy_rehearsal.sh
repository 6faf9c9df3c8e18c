#!/usr/bin/env bash
# Deployment rehearsal on this machine, without containers (docs/runbook.md):
#   build the previous release ("old") and this one ("new", HEAD) from git, each with
#   its own virtualenv and collected static files; deploy old on a fresh PostgreSQL
#   database in production mode (gunicorn, Celery worker and beat) and run the smoke
#   flow over HTTP; upgrade to new: migrate (and run the flow on old, still serving, on
#   the new schema), restart on new's code, run the flow; back the database up with
#   pg_dump, restore it into an empty database and check the ledger there; roll back to
#   old (migrations first, with new's code, then old's code) and run the smoke flow again.
# Every phase is timed; every process started here is stopped on exit; any failure
# exits non-zero.
#
# Settings (environment):
#   LEVY_PREVIOUS_RELEASE   git ref of "old" (default: the parent of the newest commit
#                           that touched a levy/*/migrations/ file)
#   LEVY_REHEARSAL_DIR      work directory (default /tmp/levy-rehearsal)
#   LEVY_REHEARSAL_PORT     the web port on 127.0.0.1 (default 8500)
#   LEVY_REHEARSAL_DB       database name (default levy_rehearsal_main; the restore goes
#                           to <name>_restore)
#   LEVY_REHEARSAL_PG       PostgreSQL server URL (default postgres://root@127.0.0.1:5432)
#   LEVY_REHEARSAL_REDIS    Redis server URL (default redis://127.0.0.1:6379)
#   LEVY_REHEARSAL_CACHE_DB, LEVY_REHEARSAL_BROKER_DB   Redis databases (default 12, 13)
#   LEVY_REHEARSAL_KEEP=1   keep the databases at the end (they are kept on failure)
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"

DIR="${LEVY_REHEARSAL_DIR:-/tmp/levy-rehearsal}"
PORT="${LEVY_REHEARSAL_PORT:-8500}"
DB="${LEVY_REHEARSAL_DB:-levy_rehearsal_main}"
RESTORE_DB="${DB}_restore"
PG="${LEVY_REHEARSAL_PG:-postgres://root@127.0.0.1:5432}"
REDIS="${LEVY_REHEARSAL_REDIS:-redis://127.0.0.1:6379}"
CACHE_DB="${LEVY_REHEARSAL_CACHE_DB:-12}"
BROKER_DB="${LEVY_REHEARSAL_BROKER_DB:-13}"
BASE_URL="http://127.0.0.1:$PORT"
RUN="$DIR/run"
QUEUES="notifications_high,notifications,levy"

T0=$EPOCHREALTIME
PHASE=""
PHASE_T0=""
TIMINGS=()
declare -A PROC_NAME=()
PROCS=()
SUCCESS=0

# --- output and timing ----------------------------------------------------------------------

seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

end_phase() {
  if [ -n "$PHASE" ]; then
    local took
    took="$(seconds_since "$PHASE_T0")"
    TIMINGS+=("$(printf '%7s s  %s' "$took" "$PHASE")")
    echo "    ($PHASE: ${took} s)"
  fi
  PHASE=""
}

phase() {
  end_phase
  PHASE="$1"
  PHASE_T0=$EPOCHREALTIME
  echo
  echo "==> [$(seconds_since "$T0") s] $1"
}

say() { echo "    $*"; }
fail() {
  echo "FAILED: $*" >&2
  exit 1
}

# --- processes ------------------------------------------------------------------------------

alive() {  # a process that exists and is not a zombie
  local state
  state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$state" ] && [ "$state" != "Z" ]
}

# stop_process PID: SIGTERM (graceful: gunicorn drains, Celery finishes its tasks), then
# SIGKILL to the whole process group after 40 s.
stop_process() {
  local pid="$1" name="${PROC_NAME[$1]:-process}"
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while alive "$pid" && [ "$waited" -lt 400 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if alive "$pid"; then say "$name (pid $pid) did not stop in 40 s: killing it"; fi
  fi
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local rest=()
  for p in "${PROCS[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
  PROCS=("${rest[@]}")
}

stop_all() {
  local pid
  for pid in "${PROCS[@]}"; do
    [ -n "$pid" ] && stop_process "$pid"
  done
}

# env_for RELEASE VENV: the production environment of a process of RELEASE.
env_for() {
  ENV=(
    "HOME=${HOME:-/root}"
    "LANG=C.UTF-8"
    "PATH=$2/bin:/usr/local/bin:/usr/bin:/bin"
    "PYTHONPATH=$1"
    "DJANGO_SETTINGS_MODULE=config.settings"
    "DJANGO_ENV=production"
    "DJANGO_SECRET_KEY=$SECRET_KEY"
    "LEVY_PROVIDER_SECRETS_KEY=$PROVIDER_KEY"
    "DATABASE_URL=$PG/$DB"
    "REDIS_URL=$REDIS/$CACHE_DB"
    "CELERY_BROKER_URL=$REDIS/$BROKER_DB"
    "DJANGO_ALLOWED_HOSTS=127.0.0.1,localhost"
    "LEVY_BIND=127.0.0.1:$PORT"
    "WEB_CONCURRENCY=${LEVY_REHEARSAL_WEB_CONCURRENCY:-2}"
    "LEVY_SITE_URL=https://127.0.0.1:$PORT/"
    "PROMETHEUS_MULTIPROC_DIR=$RUN/prometheus"
    "LEVY_METRICS_TOKEN=$METRICS_TOKEN"
    # An old release may limit every sign-in per address (10/min by default then); the
    # four smoke runs sign in twelve times from one address within a few minutes.
    # Current releases count only failed sign-ins and ignore this variable.
    "LEVY_RATE_SIGN_IN=60/min"
  )
}

# in_release RELEASE VENV [VAR=value ...] -- COMMAND...: run in the foreground.
in_release() {
  local rel="$1" venv="$2"
  shift 2
  local extra=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    extra+=("$1")
    shift
  done
  shift
  env_for "$rel" "$venv"
  (cd "$rel" && env -i "${ENV[@]}" "${extra[@]}" "$@")
}

# start NAME RELEASE VENV COMMAND...: in the background, in its own process group.
start() {
  local name="$1" rel="$2" venv="$3"
  shift 3
  env_for "$rel" "$venv"
  (cd "$rel" && exec setsid env -i "${ENV[@]}" "$@") >"$RUN/$name.log" 2>&1 </dev/null &
  local pid=$!
  PROCS+=("$pid")
  PROC_NAME[$pid]="$name"
  LAST_PID=$pid
  say "started $name: pid $pid, log $RUN/$name.log"
}

running_from() {  # running_from PID RELEASE: the process runs in the release's directory
  local cwd
  cwd="$(readlink "/proc/$1/cwd" 2>/dev/null || true)"
  [ "$cwd" = "$2" ] || fail "${PROC_NAME[$1]} (pid $1) runs in ${cwd:-nowhere}, not in $2"
}

wait_ready() {  # wait_ready WEB_PID
  local pid="$1" deadline=$((SECONDS + 60)) body=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    alive "$pid" || {
      tail -n 30 "$RUN/${PROC_NAME[$pid]}.log" >&2
      fail "${PROC_NAME[$pid]} exited before /readyz answered"
    }
    body="$(curl -s --max-time 2 -H 'X-Forwarded-Proto: https' "$BASE_URL/readyz" || true)"
    if echo "$body" | grep -q '"status": *"ok"'; then
      say "/readyz: $body"
      return 0
    fi
    sleep 0.3
  done
  tail -n 30 "$RUN/${PROC_NAME[$pid]}.log" >&2
  fail "/readyz did not answer ok within 60 s (last answer: ${body:-none})"
}

wait_worker() {  # wait_worker PID
  local pid="$1" deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    alive "$pid" || {
      tail -n 30 "$RUN/${PROC_NAME[$pid]}.log" >&2
      fail "${PROC_NAME[$pid]} exited"
    }
    if grep -q ' ready\.' "$RUN/${PROC_NAME[$pid]}.log"; then
      say "${PROC_NAME[$pid]}: ready (its log says \"$(grep -m1 -o '[^ "]*@[^ "]* ready\.' "$RUN/${PROC_NAME[$pid]}.log")\")"
      return 0
    fi
    sleep 0.3
  done
  tail -n 30 "$RUN/${PROC_NAME[$pid]}.log" >&2
  fail "${PROC_NAME[$pid]} was not ready within 60 s"
}

# --- releases -------------------------------------------------------------------------------

lock_hash() { sha256sum "$1/requirements.lock" | cut -d' ' -f1; }

# venv_for RELEASE: a virtualenv installed from the release's requirements.lock, one per
# distinct lock. The checkout's own .venv (the one `make test` builds) is used when the
# locks are the same; otherwise one is built under $DIR/venvs/.
venv_for() {
  local rel="$1" hash venv
  hash="$(lock_hash "$rel")"
  if [ "$hash" = "$(lock_hash "$ROOT")" ]; then
    install_deps >&2
    VENV_OUT="$VENV"
  else
    venv="$DIR/venvs/$hash"
    if [ ! -f "$venv/.levy-lock.sha256" ] || [ "$(cat "$venv/.levy-lock.sha256")" != "$hash" ]; then
      say "building a virtualenv for lock ${hash:0:12} in $venv"
      rm -rf "$venv"
      "$PYTHON" -m venv "$venv"
      "$venv/bin/python" -m pip install --disable-pip-version-check -r "$rel/requirements.lock" \
        >"$DIR/venvs/$hash.log" 2>&1 || fail "pip install failed: see $DIR/venvs/$hash.log"
      echo "$hash" >"$venv/.levy-lock.sha256"
    fi
    VENV_OUT="$venv"
  fi
  if ! "$VENV_OUT/bin/python" -c "import gunicorn" 2>/dev/null; then
    # A release older than the production server: serve it with the new release's pin.
    local pin
    pin="$(grep -i '^gunicorn==' "$NEW_DIR/requirements.lock" || true)"
    [ -n "$pin" ] || fail "neither release's requirements.lock pins gunicorn"
    [ "$VENV_OUT" != "$VENV" ] || fail "$VENV has no gunicorn although requirements.lock is installed"
    say "the release's lock has no gunicorn: adding $pin (from the new release's lock) to its virtualenv"
    "$VENV_OUT/bin/python" -m pip install --disable-pip-version-check "$pin" >>"$DIR/venvs/$hash.log" 2>&1 ||
      fail "pip install $pin failed: see $DIR/venvs/$hash.log"
  fi
}

build_release() {  # build_release SHA LABEL
  local sha="$1" label="$2" dir="$DIR/releases/$1"
  mkdir -p "$dir"
  git -C "$ROOT" archive "$sha" | tar -x -C "$dir"
  # The pages' assets (htmx), pinned by package-lock.json, as docs/operations.md and the
  # Dockerfile install them: without them every page, the error pages included, fails.
  if [ -f "$dir/package-lock.json" ]; then
    (cd "$dir" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >"$dir/npm-ci.log" 2>&1) ||
      fail "npm ci failed for $label: see $dir/npm-ci.log"
  fi
  say "$label: $(git -C "$ROOT" log -n1 --format='%h %s' "$sha" | cut -c1-100)"
  say "      code in $dir"
}

has_commit() { git -C "$ROOT" rev-parse --verify --quiet "$1^{commit}" >/dev/null; }

unshallow() {  # a shallow clone lacks the history the previous release is found in
  [ "$(git -C "$ROOT" rev-parse --is-shallow-repository)" = "true" ] || return 0
  say "this clone is shallow: fetching the full history (git fetch --unshallow)"
  git -C "$ROOT" fetch --quiet --unshallow ||
    fail "this clone is shallow and 'git fetch --unshallow' failed: clone with full history, or set LEVY_PREVIOUS_RELEASE to a commit this clone has"
}

resolve_previous() {
  if [ -n "${LEVY_PREVIOUS_RELEASE:-}" ]; then
    has_commit "$LEVY_PREVIOUS_RELEASE" || unshallow
    has_commit "$LEVY_PREVIOUS_RELEASE" || fail "LEVY_PREVIOUS_RELEASE=$LEVY_PREVIOUS_RELEASE is not a commit in this clone"
    return
  fi
  unshallow
  local newest
  newest="$(git -C "$ROOT" log -n1 --format=%H HEAD -- 'levy/*/migrations/*')"
  [ -n "$newest" ] || fail "no commit touches levy/*/migrations/: set LEVY_PREVIOUS_RELEASE"
  has_commit "${newest}^" || fail "the newest migration commit ${newest:0:12} has no parent: set LEVY_PREVIOUS_RELEASE"
}

# --- the database ---------------------------------------------------------------------------

psql_q() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

KEPT_DBS=()
recreate_db() {
  psql_q "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" -c "CREATE DATABASE \"$1\""
  KEPT_DBS+=("$1")
}

# Row counts and totals of the tables that hold money and its reasons.
MONEY_SQL="
SELECT 'wallets_wallet', count(*), COALESCE(sum(balance), 0) FROM wallets_wallet
UNION ALL SELECT 'wallets_transaction', count(*), COALESCE(sum(amount), 0) FROM wallets_transaction
UNION ALL SELECT 'billing_bill', count(*), COALESCE(sum(amount), 0) FROM billing_bill
UNION ALL SELECT 'billing_billacknowledgement', count(*), 0 FROM billing_billacknowledgement
UNION ALL SELECT 'billing_billdispute', count(*), 0 FROM billing_billdispute
UNION ALL SELECT 'api_idempotencyrecord', count(*), 0 FROM api_idempotencyrecord
UNION ALL SELECT 'estates_membership', count(*), 0 FROM estates_membership
UNION ALL SELECT 'audit_auditevent', count(*), 0 FROM audit_auditevent"

# check_ledger DATABASE: the checkout's check_ledger (old releases may predate it), run
# with the new release's virtualenv in production mode.
check_ledger() {
  if ! in_release "$ROOT" "$NEW_VENV" "DATABASE_URL=$PG/$1" -- python manage.py check_ledger 2>&1 |
    sed 's/^/    /'; then
    fail "check_ledger failed on $1"
  fi
}

# counters_check LABEL RELEASE VENV: a release that keeps per-bill counters
# (manage.py bill_counters) must find them equal to a recount from the facts. Rows
# written by the previous release's code between the migration and the restart are
# not counted: the check reports them, and the documented remedy (--rebuild) is
# applied and checked.
counters_check() {
  local label="$1" rel="$2" venv="$3"
  [ -f "$rel/levy/billing/management/commands/bill_counters.py" ] || return 0
  if in_release "$rel" "$venv" -- python manage.py bill_counters --check >"$RUN/counters-$label.log" 2>&1; then
    say "$label: bill_counters --check: $(tail -n 1 "$RUN/counters-$label.log")"
    return 0
  fi
  say "$label: bill_counters --check found drift (bills written by the previous code during the deploy):"
  grep -E 'drifted|^bill ' "$RUN/counters-$label.log" | head -n 5 | sed 's/^/      /'
  if ! in_release "$rel" "$venv" -- python manage.py bill_counters --rebuild 2>&1 |
    sed "s/^/    $label: bill_counters --rebuild: /"; then
    fail "bill_counters --rebuild failed"
  fi
  if ! in_release "$rel" "$venv" -- python manage.py bill_counters --check >"$RUN/counters-$label.log" 2>&1; then
    cat "$RUN/counters-$label.log" >&2
    fail "the bill counters still drift after --rebuild"
  fi
  say "$label: bill_counters --check after the rebuild: $(tail -n 1 "$RUN/counters-$label.log")"
}

# --- the releases' processes ----------------------------------------------------------------

WEB_PID=""
WORKER_PID=""
BEAT_PID=""

start_release() {  # start_release LABEL RELEASE VENV
  local label="$1" rel="$2" venv="$3" conf="$2/config/gunicorn.conf.py"
  mkdir -p "$RUN/prometheus"
  if [ ! -f "$conf" ]; then
    conf="$NEW_DIR/config/gunicorn.conf.py"
    say "$label has no config/gunicorn.conf.py: using the new release's ($conf)"
  fi
  start "web-$label" "$rel" "$venv" gunicorn -c "$conf" config.wsgi
  WEB_PID=$LAST_PID
  WORKER_PID=""
  BEAT_PID=""
  if [ -f "$rel/config/celery.py" ]; then
    start "worker-$label" "$rel" "$venv" celery -A config worker -Q "$QUEUES" -c 2 -n "rehearsal-$label@%h" -l info
    WORKER_PID=$LAST_PID
    start "beat-$label" "$rel" "$venv" celery -A config beat -l info -s "$RUN/beat-$label-schedule"
    BEAT_PID=$LAST_PID
  else
    say "$label has no Celery app (config/celery.py): no worker or beat; it writes notifications in the request"
  fi
  wait_ready "$WEB_PID"
  if [ -n "$WORKER_PID" ]; then wait_worker "$WORKER_PID"; fi
  if [ -n "$BEAT_PID" ]; then
    sleep 1
    alive "$BEAT_PID" || {
      tail -n 30 "$RUN/${PROC_NAME[$BEAT_PID]}.log" >&2
      fail "beat exited"
    }
  fi
  local pid
  for pid in "$WEB_PID" "$WORKER_PID" "$BEAT_PID"; do
    if [ -n "$pid" ]; then running_from "$pid" "$rel"; fi
  done
  say "$label is serving: every process runs from $rel"
}

stop_release() {
  local pid
  for pid in "$BEAT_PID" "$WORKER_PID" "$WEB_PID"; do
    if [ -n "$pid" ]; then
      stop_process "$pid"
      say "stopped ${PROC_NAME[$pid]} (pid $pid)"
    fi
  done
  WEB_PID=""
  WORKER_PID=""
  BEAT_PID=""
}

smoke() {  # smoke LABEL RELEASE VENV
  local label="$1" rel="$2" venv="$3" email password static=() url
  email="operator-$label-$RUN_ID@rehearsal.levy.test"
  password="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')"
  in_release "$rel" "$venv" "DJANGO_SUPERUSER_PASSWORD=$password" -- \
    python manage.py createsuperuser --noinput --email "$email" >/dev/null
  say "operator $email created with manage.py createsuperuser"
  if grep -qi whitenoise "$rel/config/settings.py"; then
    # The address pages use for the admin's stylesheet: with a manifest storage, its hashed name.
    url="$(in_release "$rel" "$venv" -- python -c \
      'import django; django.setup(); from django.templatetags.static import static; print(static("admin/css/base.css"))')" ||
      fail "$label cannot name the address of its static files"
    static=(--static-path "$url")
  fi
  LEVY_SMOKE_OPERATOR_PASSWORD="$password" "$PYTHON" "$ROOT/scripts/rehearsal_smoke.py" \
    --base-url "$BASE_URL" --label "$label" --operator-email "$email" "${static[@]}" ||
    fail "the smoke flow failed against $label (logs in $RUN)"
}

migrations_check() {  # migrations_check LABEL RELEASE VENV [VAR=value ...]
  local label="$1" rel="$2" venv="$3"
  shift 3
  if ! in_release "$rel" "$venv" "$@" -- python "$ROOT/scripts/rehearsal_migrations.py" check 2>&1 |
    sed "s/^/    $label: /"; then
    fail "the database does not hold exactly the migrations of $label"
  fi
}

# --- exit -----------------------------------------------------------------------------------

on_exit() {
  local code=$?
  trap - EXIT
  set +e
  if [ "${#PROCS[@]}" -gt 0 ]; then
    echo
    echo "==> stopping every process started by the rehearsal"
    stop_all
  fi
  if [ "$SUCCESS" = 1 ]; then
    if [ "${LEVY_REHEARSAL_KEEP:-0}" != 1 ]; then
      psql_q "$PG/postgres" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS \"$RESTORE_DB\" WITH (FORCE)" >/dev/null 2>&1
      redis-cli -u "$REDIS/$CACHE_DB" flushdb >/dev/null 2>&1
      redis-cli -u "$REDIS/$BROKER_DB" flushdb >/dev/null 2>&1
    fi
  else
    [ -n "$PHASE" ] && echo "Rehearsal FAILED in phase: $PHASE (exit $code)" >&2
    echo "Logs are in $RUN." >&2
    if [ "${#KEPT_DBS[@]}" -gt 0 ]; then echo "Kept for inspection: the database(s) ${KEPT_DBS[*]}." >&2; fi
    [ "$code" -ne 0 ] || code=1
  fi
  exit "$code"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the rehearsal --------------------------------------------------------------------------

phase "preflight"
for tool in git tar curl psql pg_dump pg_restore redis-cli setsid flock; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock -n 9 || fail "another rehearsal holds $DIR/.lock"
ensure_postgres
ensure_redis
if curl -s -o /dev/null --max-time 1 "$BASE_URL/"; then fail "something already listens on 127.0.0.1:$PORT"; fi
# Releases are rebuilt on every run; virtualenvs are kept, one per lock.
rm -rf "$RUN" "$DIR/backups" "$DIR/releases"
mkdir -p "$RUN" "$DIR/backups" "$DIR/releases" "$DIR/venvs"
RUN_ID="$(date +%Y%m%d%H%M%S)"
SECRET_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(64))')"
PROVIDER_KEY="$("$PYTHON" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
METRICS_TOKEN="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')"
say "work directory $DIR, web on $BASE_URL, database $DB, Redis dbs $CACHE_DB (cache) and $BROKER_DB (broker)"
say "production mode: DJANGO_ENV=production, a secret key generated for this run, DEBUG left at its production default"
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
  say "note: the checkout has uncommitted changes; the releases are built from commits only"
fi

phase "build the releases"
NEW_SHA="$(git -C "$ROOT" rev-parse HEAD)"
resolve_previous
if [ -n "${LEVY_PREVIOUS_RELEASE:-}" ]; then
  OLD_SHA="$(git -C "$ROOT" rev-parse "${LEVY_PREVIOUS_RELEASE}^{commit}")"
  say "old release: LEVY_PREVIOUS_RELEASE=$LEVY_PREVIOUS_RELEASE"
else
  MIGRATION_SHA="$(git -C "$ROOT" log -n1 --format=%H HEAD -- 'levy/*/migrations/*')"
  OLD_SHA="$(git -C "$ROOT" rev-parse "${MIGRATION_SHA}^")"
  say "old release: the parent of ${MIGRATION_SHA:0:12}, the newest commit that touched levy/*/migrations/"
fi
NEW_DIR="$DIR/releases/$NEW_SHA"
OLD_DIR="$DIR/releases/$OLD_SHA"
build_release "$NEW_SHA" "new"
if [ "$OLD_SHA" != "$NEW_SHA" ]; then
  build_release "$OLD_SHA" "old"
else
  say "old: the same commit as new"
fi
venv_for "$NEW_DIR"
NEW_VENV="$VENV_OUT"
say "new: virtualenv $NEW_VENV (lock $(lock_hash "$NEW_DIR" | cut -c1-12))"
venv_for "$OLD_DIR"
OLD_VENV="$VENV_OUT"
say "old: virtualenv $OLD_VENV (lock $(lock_hash "$OLD_DIR" | cut -c1-12))"
for side in new old; do
  if [ "$side" = new ]; then rel=$NEW_DIR venv=$NEW_VENV; else rel=$OLD_DIR venv=$OLD_VENV; fi
  [ "$side" = old ] && [ "$OLD_SHA" = "$NEW_SHA" ] && continue
  in_release "$rel" "$venv" -- python manage.py collectstatic --noinput -v0 ||
    fail "collectstatic failed for the $side release"
  say "$side: collectstatic: $(find "$rel/staticfiles" -type f | wc -l) files in $rel/staticfiles"
done

phase "deploy old on a fresh database"
recreate_db "$DB"
redis-cli -u "$REDIS/$CACHE_DB" flushdb >/dev/null
redis-cli -u "$REDIS/$BROKER_DB" flushdb >/dev/null
say "database $DB created; Redis dbs $CACHE_DB and $BROKER_DB emptied"
in_release "$OLD_DIR" "$OLD_VENV" -- python manage.py migrate --noinput >"$RUN/migrate-old.log" 2>&1 ||
  fail "migrate (old) failed: $(tail -n 20 "$RUN/migrate-old.log")"
say "old: migrate applied $(grep -c '  Applying ' "$RUN/migrate-old.log") migrations"
migrations_check old "$OLD_DIR" "$OLD_VENV"
start_release old "$OLD_DIR" "$OLD_VENV"

phase "smoke flow on old (data for the upgrade to carry)"
smoke old "$OLD_DIR" "$OLD_VENV"

phase "upgrade to new: migrate while old serves, then restart on new's code"
in_release "$NEW_DIR" "$NEW_VENV" -- python manage.py migrate --noinput >"$RUN/migrate-upgrade.log" 2>&1 ||
  fail "migrate (new) failed: $(tail -n 20 "$RUN/migrate-upgrade.log")"
if grep -q '  Applying ' "$RUN/migrate-upgrade.log"; then
  grep '  Applying ' "$RUN/migrate-upgrade.log" | sed 's/^ */    new: /'
else
  say "new: no migration to apply (old and new have the same migrations)"
fi
migrations_check new "$NEW_DIR" "$NEW_VENV"
say "old still serving, on the new schema:"
smoke old-on-new-schema "$OLD_DIR" "$OLD_VENV"
stop_release
start_release new "$NEW_DIR" "$NEW_VENV"

phase "smoke flow on new"
smoke new "$NEW_DIR" "$NEW_VENV"
check_ledger "$DB"
counters_check new "$NEW_DIR" "$NEW_VENV"

phase "backup with pg_dump, restore into an empty database, check the copy"
DUMP="$DIR/backups/$DB-$RUN_ID.dump"
pg_dump -Fc --dbname="$PG/$DB" --file="$DUMP" || fail "pg_dump failed"
say "pg_dump -Fc: $DUMP ($(du -h "$DUMP" | cut -f1))"
recreate_db "$RESTORE_DB"
pg_restore --no-owner --exit-on-error --dbname="$PG/$RESTORE_DB" "$DUMP" || fail "pg_restore failed"
say "pg_restore into the empty database $RESTORE_DB: done"
check_ledger "$RESTORE_DB"
SOURCE_ROWS="$(psql_q "$PG/$DB" -F ' ' -c "$MONEY_SQL")"
RESTORED_ROWS="$(psql_q "$PG/$RESTORE_DB" -F ' ' -c "$MONEY_SQL")"
printf '    %-28s %8s %8s %14s\n' table source restored total
paste -d' ' <(echo "$SOURCE_ROWS") <(echo "$RESTORED_ROWS") |
  awk '{ printf "    %-28s %8s %8s %14s%s\n", $1, $2, $5, $3, ($2 == $5 && $3 == $6 ? "" : "  MISMATCH") }'
[ "$SOURCE_ROWS" = "$RESTORED_ROWS" ] || fail "the restored copy's money tables differ from the source"
TRIGGERS="$(psql_q "$PG/$RESTORE_DB" -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'wallets_transaction_append_only'")"
[ "$TRIGGERS" = 1 ] || fail "the restored copy lacks the ledger's append-only trigger"
say "the restored copy has the ledger's append-only trigger"
migrations_check "restored copy, new" "$NEW_DIR" "$NEW_VENV" "DATABASE_URL=$PG/$RESTORE_DB"

phase "roll back to old: migrations back with new's code, then old's code"
for side in old new; do
  if [ "$side" = new ]; then rel=$NEW_DIR venv=$NEW_VENV; else rel=$OLD_DIR venv=$OLD_VENV; fi
  in_release "$rel" "$venv" -- python "$ROOT/scripts/rehearsal_migrations.py" leaves >"$RUN/leaves-$side.txt" ||
    fail "cannot list the migrations of $side"
done
declare -A OLD_LEAF=()
while read -r app name; do OLD_LEAF[$app]=$name; done <"$RUN/leaves-old.txt"
TARGETS=()
while read -r app name; do
  target="${OLD_LEAF[$app]:-zero}"
  if [ "$target" != "$name" ]; then TARGETS+=("$app $target $name"); fi
done <"$RUN/leaves-new.txt"
stop_release
if [ "${#TARGETS[@]}" -eq 0 ]; then
  say "old and new have the same migrations: no migration to reverse"
else
  for entry in "${TARGETS[@]}"; do
    read -r app target name <<<"$entry"
    say "migrate $app $target (new is at $name)"
    in_release "$NEW_DIR" "$NEW_VENV" -- python manage.py migrate "$app" "$target" --noinput \
      >"$RUN/migrate-rollback-$app.log" 2>&1 || fail "migrate $app $target failed: $(tail -n 20 "$RUN/migrate-rollback-$app.log")"
    grep '  Unapplying ' "$RUN/migrate-rollback-$app.log" | sed 's/^ */      /' || true
  done
fi
migrations_check old "$OLD_DIR" "$OLD_VENV"
start_release old "$OLD_DIR" "$OLD_VENV"

phase "smoke flow on old after the rollback"
smoke rollback "$OLD_DIR" "$OLD_VENV"
check_ledger "$DB"
counters_check old "$OLD_DIR" "$OLD_VENV"

phase "stop"
stop_release
end_phase
SUCCESS=1
echo
echo "==> Rehearsal passed in $(seconds_since "$T0") s: old ${OLD_SHA:0:12} -> new ${NEW_SHA:0:12} -> old"
printf '%s\n' "${TIMINGS[@]}"
