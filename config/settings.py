"""Levy settings: one module, every value read from the environment.

Defaults are safe for development and the demo (SQLite, local-memory cache).
Production sets ``DJANGO_ENV=production`` and must provide its secrets.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def database_from_url(url: str) -> dict[str, object]:
    """Translate ``postgres://user:pass@host:port/name`` or ``sqlite:///path``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = parsed.path[1:] if parsed.path.startswith("//") else parsed.path.lstrip("/")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path or str(BASE_DIR / "db.sqlite3"),
        }
    if parsed.scheme in {"postgres", "postgresql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": int(env("DB_CONN_MAX_AGE", "60")),
            "CONN_HEALTH_CHECKS": True,
        }
    raise ValueError(f"Unsupported DATABASE_URL scheme: {parsed.scheme!r}")


ENVIRONMENT = env("DJANGO_ENV", "development")
IS_PRODUCTION = ENVIRONMENT == "production"

SECRET_KEY = env("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if IS_PRODUCTION:
        raise RuntimeError("DJANGO_SECRET_KEY must be set in production")
    SECRET_KEY = "development-only-insecure-key-not-for-production-use"  # noqa: S105 - never used in production

DEBUG = env_bool("DJANGO_DEBUG", not IS_PRODUCTION)
ALLOWED_HOSTS = [h for h in env("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "levy.common",
    "levy.accounts",
    "levy.estates",
    "levy.billing",
    "levy.wallets",
    "levy.notifications",
    "levy.audit",
    "levy.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", "test_levy")}

AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The estates Levy serves bill by calendar date in West Africa Time; due dates and
# "overdue" are judged on this calendar.
TIME_ZONE = env("LEVY_TIME_ZONE", "Africa/Lagos")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LEVY_DEFAULT_CURRENCY = env("LEVY_DEFAULT_CURRENCY", "NGN")

# --- cache and rate limits ----------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Requests allowed per window, per scope. Each request is counted against the caller
# (per user, or per IP before sign-in) and against the estate, in Redis, so every
# server process shares the same counters.
LEVY_RATE_LIMITS = {
    "user": env("LEVY_RATE_USER", "600/min"),
    "estate": env("LEVY_RATE_ESTATE", "20000/min"),
    "sign_in": env("LEVY_RATE_SIGN_IN", "10/min"),
    "acknowledge": env("LEVY_RATE_ACKNOWLEDGE", "60/min"),
    "dispute": env("LEVY_RATE_DISPUTE", "10/min"),
    "pay": env("LEVY_RATE_PAY", "30/min"),
    "credit": env("LEVY_RATE_CREDIT", "120/min"),
    "bill_create": env("LEVY_RATE_BILL_CREATE", "60/min"),
}
LEVY_RATE_LIMITS_ENABLED = env_bool("LEVY_RATE_LIMITS_ENABLED", True)

# --- API -------------------------------------------------------------------------------------
API_RENDERERS = ["rest_framework.renderers.JSONRenderer"]
if DEBUG:
    API_RENDERERS.append("rest_framework.renderers.BrowsableAPIRenderer")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": API_RENDERERS,
    "DEFAULT_PARSER_CLASSES": [
        "levy.api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "levy.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": datetime.timedelta(minutes=int(env("JWT_ACCESS_MINUTES", "15"))),
    "REFRESH_TOKEN_LIFETIME": datetime.timedelta(days=int(env("JWT_REFRESH_DAYS", "7"))),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Levy API",
    "DESCRIPTION": "Billing for residential estates: bills, acknowledgement, disputes and wallet payments.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {},
    # The docs page's scripts are served by Levy itself (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- background work (Celery) ------------------------------------------------------------------
# With a broker configured (Redis), tasks go to workers. Without one (the demo), they
# run in-process, right after the request's transaction commits.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "memory://localhost/")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not (env("CELERY_BROKER_URL") or REDIS_URL))
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_DEFAULT_QUEUE = "levy"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task whose worker died unacknowledged is redelivered after this long; the
    # sweep re-dispatches undelivered intents sooner.
    "visibility_timeout": int(env("CELERY_VISIBILITY_TIMEOUT", "900")),
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    # Publishing gives up at once when the broker is down (the sweep retries later),
    # so a request never waits on an outage.
    "max_retries": 0,
}
CELERY_BEAT_SCHEDULE = {
    "sweep-undelivered-notifications": {
        "task": "levy.notifications.tasks.sweep_undelivered",
        "schedule": float(env("LEVY_SWEEP_EVERY_SECONDS", "60")),
    },
    "payment-reminders": {
        "task": "levy.notifications.tasks.send_payment_reminders",
        "schedule": crontab(hour=int(env("LEVY_REMINDER_HOUR", "8")), minute=0),
    },
}

# --- notifications -----------------------------------------------------------------------------
LEVY_NOTIFICATION_CHANNELS = [c for c in env("LEVY_NOTIFICATION_CHANNELS", "email").split(",") if c]
LEVY_FANOUT_CHUNK = int(env("LEVY_FANOUT_CHUNK", "5000"))
# Optional pause between fan-out chunks, to spread the write load of a huge estate.
LEVY_FANOUT_CHUNK_PAUSE_SECONDS = float(env("LEVY_FANOUT_CHUNK_PAUSE_SECONDS", "0"))
LEVY_SWEEP_GRACE_SECONDS = int(env("LEVY_SWEEP_GRACE_SECONDS", "30"))
LEVY_SWEEP_REDISPATCH_SECONDS = int(env("LEVY_SWEEP_REDISPATCH_SECONDS", "300"))
# An intent whose fan-out failed this many times is left for a person (see last_error).
LEVY_INTENT_MAX_ATTEMPTS = int(env("LEVY_INTENT_MAX_ATTEMPTS", "10"))
LEVY_DELIVERY_MAX_ATTEMPTS = int(env("LEVY_DELIVERY_MAX_ATTEMPTS", "6"))
LEVY_DELIVERY_RETRY_BASE_SECONDS = int(env("LEVY_DELIVERY_RETRY_BASE_SECONDS", "60"))
LEVY_DELIVERY_STUCK_SECONDS = int(env("LEVY_DELIVERY_STUCK_SECONDS", "600"))
LEVY_REMINDER_OFFSETS_DAYS = [int(d) for d in env("LEVY_REMINDER_OFFSETS_DAYS", "-3,1,7").split(",") if d]
LEVY_REMINDER_CATCH_UP_DAYS = int(env("LEVY_REMINDER_CATCH_UP_DAYS", "2"))
LEVY_SITE_URL = env("LEVY_SITE_URL", "http://127.0.0.1:8000/")

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = int(env("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Levy <no-reply@levy.test>")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # In-process tasks (the demo) would log a line per task in the web server's output.
    "loggers": {"celery.app.trace": {"level": "WARNING" if CELERY_TASK_ALWAYS_EAGER else "INFO"}},
}
