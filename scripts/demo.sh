#!/usr/bin/env bash
# Install everything and run Levy with a demo estate on SQLite, tasks in-process.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
install_deps
export DATABASE_URL="${DEMO_DATABASE_URL:-sqlite:///$ROOT/demo.sqlite3}"
ADDR="${LEVY_DEMO_ADDR:-127.0.0.1:8000}"
"$VENV/bin/python" manage.py migrate --noinput -v0
# The seed's notifications are stored in the inbox; their emails are not printed.
EMAIL_BACKEND=django.core.mail.backends.locmem.EmailBackend "$VENV/bin/python" manage.py seed_demo
echo
echo "  API docs:      http://$ADDR/api/docs/  (schema at /api/schema/; walk-through in docs/api.md)"
echo "  Django admin:  http://$ADDR/admin/  (operator@levy.test)"
echo "Tasks run in-process after each request; emails are printed here (console backend)."
echo "Start over from a fresh demo estate: stop it, delete demo.sqlite3, run make demo again."
echo
echo "Levy demo running. Sign in with one of the logins above at:"
echo
echo "    http://$ADDR/sign-in/"
echo
echo "Stop it with Ctrl-C."
exec "$VENV/bin/python" manage.py runserver "$ADDR" --noreload
