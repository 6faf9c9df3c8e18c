#!/usr/bin/env bash
# Migrations are complete and reversible.
#
# 1. No model change is missing its migration (makemigrations --check).
# 2. On a scratch PostgreSQL database: apply every migration and load the demo estate;
#    unapply every Levy app back to zero, then Django's own apps, and check that
#    nothing is left (tables, functions, sequences, views, recorded migrations);
#    apply everything again and check that the schema is the one the first pass built.
#
# Any error fails the run. The scratch database is dropped when the check passes and
# kept for inspection when it fails. MIGRATIONS_CHECK_DATABASE_URL names another
# scratch database (it is dropped and recreated).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
install_deps
ensure_postgres

export DATABASE_URL="${MIGRATIONS_CHECK_DATABASE_URL:-postgres://root@127.0.0.1:5432/levy_migrations_check}"
DB_NAME="${DATABASE_URL##*/}"
ADMIN_URL="${DATABASE_URL%/*}/postgres"
# Development settings with tasks in-process: nothing here needs Redis or a worker.
export DJANGO_ENV=development
unset REDIS_URL CELERY_BROKER_URL
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

manage() { "$VENV/bin/python" manage.py "$@"; }
step() { echo "==> $*"; }
fail() { echo "migrations check FAILED: $*" >&2; echo "(scratch database kept: $DB_NAME)" >&2; exit 1; }
query() { psql "$DATABASE_URL" -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
# The schema without comments, blank lines and pg_dump's per-run \restrict keys.
schema() {
  pg_dump "$DATABASE_URL" --schema-only --no-owner --no-privileges | grep -v -e '^--' -e '^$' -e '^\\restrict ' -e '^\\unrestrict '
}

step "scratch database $DB_NAME"
psql "$ADMIN_URL" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)"
psql "$ADMIN_URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB_NAME\""

step "every model change has its migration"
manage makemigrations --check --dry-run || fail "a model change has no migration (run makemigrations)"

step "forward: apply every migration"
manage migrate --noinput || fail "migrate"
schema > "$WORK/schema-first.sql"

step "load the demo estate, so that the way back runs over real rows"
EMAIL_BACKEND=django.core.mail.backends.locmem.EmailBackend manage seed_demo >/dev/null || fail "seed_demo"

# Levy's apps in reverse order of INSTALLED_APPS; unapplying one also unapplies what
# depends on it in other apps.
LEVY_APPS="$(DJANGO_SETTINGS_MODULE=config.settings "$VENV/bin/python" -c "
import django
django.setup()
from django.apps import apps
from django.db.migrations.loader import MigrationLoader
migrated = MigrationLoader(None, ignore_no_migrations=True).migrated_apps
print(' '.join(c.label for c in reversed(list(apps.get_app_configs())) if c.name.startswith('levy.') and c.label in migrated))
")"
for app in $LEVY_APPS; do
  step "backward: $app to zero"
  manage migrate "$app" zero --noinput || fail "unapplying $app"
done
for app in admin sessions auth contenttypes; do
  step "backward: django's $app to zero"
  manage migrate "$app" zero --noinput || fail "unapplying $app"
done

step "nothing is left"
LEFT="$(query "
  SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'django_migrations'
  UNION ALL SELECT 'view ' || viewname FROM pg_views WHERE schemaname = 'public'
  UNION ALL SELECT 'sequence ' || sequencename FROM pg_sequences
    WHERE schemaname = 'public' AND sequencename NOT LIKE 'django_migrations%'
  UNION ALL SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
  UNION ALL SELECT 'type ' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')
  UNION ALL SELECT 'recorded migration ' || app || '.' || name FROM django_migrations")" || fail "listing what is left"
[ -z "$LEFT" ] || fail "left behind after unapplying everything:
$LEFT"
echo "    no table, view, sequence, function, type or recorded migration left"

step "forward again"
manage migrate --noinput || fail "migrate after unapplying everything"
manage migrate --check >/dev/null || fail "unapplied migrations after the second pass"
schema > "$WORK/schema-second.sql"
diff -u "$WORK/schema-first.sql" "$WORK/schema-second.sql" \
  || fail "the schema built the second time differs from the first (diff above)"
echo "    the schema is identical to the first pass ($(grep -c '^CREATE' "$WORK/schema-second.sql") CREATE statements)"

psql "$ADMIN_URL" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE \"$DB_NAME\" WITH (FORCE)"
echo "migrations check passed"
