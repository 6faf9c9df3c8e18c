"""The Celery app: Redis broker, two notification queues, and the beat schedule."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Celery's Django fix-up runs Django's system checks when a worker starts, and the URL
# checks import every view (the API, the pages, their libraries): ~32 MB more in the
# worker's main process, all of it idle, which is most of the fan-out memory target's
# margin (docs/performance.md). Every release already runs them: `manage.py migrate`
# does before it migrates. Set CELERY_SKIP_CHECKS= (empty) to run them here too.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("levy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
