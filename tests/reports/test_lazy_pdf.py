"""The PDF renderer is loaded on the first PDF, not by every process that loads the
URLconf (the Celery worker loads it for its start-up checks and for every link it puts
in an email): reportlab costs each such process ~15 MB (docs/performance.md, fan-out
worker memory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import django
django.setup()
from django.urls import get_resolver, reverse
get_resolver().url_patterns  # every view module imported
from config.celery import app
app.loader.import_default_modules()  # every task module, as the worker imports them
print("loaded" if "reportlab" in sys.modules else "not loaded")
from levy.reports import pdf  # noqa: F401 - and it is still importable when wanted
print("loaded" if "reportlab" in sys.modules else "not loaded")
"""


def test_loading_the_urlconf_and_the_tasks_does_not_load_reportlab() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    out = subprocess.run(  # noqa: S603 - this interpreter running the fixed PROBE above
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert out == ["not", "loaded", "loaded"]
