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
echo "Levy demo running at http://$ADDR/"
echo "  Django admin:  http://$ADDR/admin/  (operator@levy.test)"
echo "  API docs:      http://$ADDR/api/docs/  (schema at /api/schema/; walk-through in docs/api.md)"
echo "Tasks run in-process after each request; emails are printed here (console backend)."
echo "Stop it with Ctrl-C."
exec "$VENV/bin/python" manage.py runserver "$ADDR" --noreload
