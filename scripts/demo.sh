#!/usr/bin/env bash
# Install everything and run Levy with a demo estate on SQLite, tasks in-process, and a
# local fake of the payment providers (Paystack and Flutterwave) for top-ups by card.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
install_deps
export DATABASE_URL="${DEMO_DATABASE_URL:-sqlite:///$ROOT/demo.sqlite3}"
# Tasks in-process even where REDIS_URL is set in the shell (no worker runs for the demo).
export CELERY_TASK_ALWAYS_EAGER=1
ADDR="${LEVY_DEMO_ADDR:-127.0.0.1:8000}"
FAKE_PORT="${LEVY_DEMO_PROVIDER_PORT:-8765}"
export LEVY_PUBLIC_URL="http://$ADDR/"
export LEVY_PAYSTACK_BASE_URL="http://127.0.0.1:$FAKE_PORT/paystack"
export LEVY_FLUTTERWAVE_BASE_URL="http://127.0.0.1:$FAKE_PORT/flutterwave"
"$VENV/bin/python" manage.py migrate --noinput -v0
# The seed's notifications are stored in the inbox; their emails are not printed.
EMAIL_BACKEND=django.core.mail.backends.locmem.EmailBackend "$VENV/bin/python" manage.py seed_demo
"$VENV/bin/python" manage.py fake_provider --port "$FAKE_PORT" &
FAKE_PID=$!
trap 'kill "$FAKE_PID" 2>/dev/null || true' EXIT
echo
echo "  API docs:      http://$ADDR/api/docs/  (schema at /api/schema/; walk-through in docs/api.md)"
echo "  Django admin:  http://$ADDR/admin/  (operator@levy.test)"
echo "  Card top-ups:  a local fake of Paystack at http://127.0.0.1:$FAKE_PORT/ (docs/api.md, \"Top up by card\")"
echo "Tasks run in-process after each request; emails are printed here (console backend)."
echo "Start over from a fresh demo estate: stop it, delete demo.sqlite3, run make demo again."
echo
echo "Levy demo running. Sign in with one of the logins above at:"
echo
echo "    http://$ADDR/sign-in/"
echo
echo "Stop it with Ctrl-C."
"$VENV/bin/python" manage.py runserver "$ADDR" --noreload
