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
from django.core.exceptions import ImproperlyConfigured
from whitenoise.compress import Compressor

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
            # Server-side parameters and prepared statements: a statement a connection
            # has run 5 times is parsed once. Always planned for its actual values
            # (force_custom_plan): a generic plan cannot use a partial index whose
            # predicate is a parameter, and one such plan took a page from 8 ms to
            # 258 ms at data set L (docs/decisions/0010).
            # No JIT compilation: it pays off on long analytic queries, and a request's
            # statement whose estimated cost crosses jit_above_cost spends longer
            # compiling than running — a resident's bill list at L ran 131 ms, 105 of
            # them JIT (docs/decisions/0010).
            "OPTIONS": (
                {
                    "server_side_binding": True,
                    "prepare_threshold": 5,
                    "options": "-c plan_cache_mode=force_custom_plan -c jit=off",
                }
                if env("DB_PREPARED_STATEMENTS", "1") == "1"
                else {"options": "-c jit=off"}
            ),
        }
    raise ValueError(f"Unsupported DATABASE_URL scheme: {parsed.scheme!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


ENVIRONMENTS = ("development", "production")
ENVIRONMENT = env("DJANGO_ENV", "development")
if ENVIRONMENT not in ENVIRONMENTS:
    # A typo ("prod") must not quietly start a development server with the development key.
    raise ImproperlyConfigured(f"DJANGO_ENV must be one of {', '.join(ENVIRONMENTS)}, not {ENVIRONMENT!r}")
IS_PRODUCTION = ENVIRONMENT == "production"

DEVELOPMENT_SECRET_KEY = "development-only-insecure-key-not-for-production-use"  # noqa: S105 - refused in production
REDIS_SCHEMES = {"redis", "rediss", "unix"}


def production_problems() -> list[str]:
    """Every missing or invalid production variable, so that one failed start names them all.

    Values are never echoed: a message may end up in a log that others read.
    """
    problems = []
    secret = env("DJANGO_SECRET_KEY")
    if not secret:
        problems.append("DJANGO_SECRET_KEY is not set (a random string of at least 50 characters)")
    elif secret == DEVELOPMENT_SECRET_KEY:
        problems.append("DJANGO_SECRET_KEY is the development key")
    elif len(secret) < 50 or len(set(secret)) < 5 or secret.startswith("django-insecure-"):
        # The same rule as Django's deploy check (security.W009).
        problems.append(
            f"DJANGO_SECRET_KEY is too weak ({len(secret)} characters): it needs at least 50 characters, "
            "5 of them different, and no 'django-insecure-' prefix"
        )
    database = urlparse(env("DATABASE_URL"))
    if not env("DATABASE_URL"):
        problems.append("DATABASE_URL is not set (postgres://user:password@host:port/name)")
    elif database.scheme not in {"postgres", "postgresql"}:
        problems.append(f"DATABASE_URL must be a PostgreSQL URL (postgres://…); its scheme is {database.scheme!r}")
    elif not database.path.strip("/"):
        problems.append("DATABASE_URL names no database (postgres://user:password@host:port/name)")
    if not env("REDIS_URL"):
        problems.append("REDIS_URL is not set (redis://host:6379/0)")
    elif urlparse(env("REDIS_URL")).scheme not in REDIS_SCHEMES:
        problems.append("REDIS_URL must be a Redis URL (redis://, rediss:// or unix://)")
    if not env_list("DJANGO_ALLOWED_HOSTS"):
        problems.append("DJANGO_ALLOWED_HOSTS is not set (the comma-separated host names Levy answers to)")
    if env_bool("DJANGO_DEBUG", False):
        problems.append("DJANGO_DEBUG is on: production never runs with DEBUG")
    if not env("LEVY_METRICS_TOKEN") and not env_bool("LEVY_METRICS_PRIVATE", False):
        problems.append(
            "LEVY_METRICS_TOKEN is not set (a random string Prometheus sends as a Bearer token); "
            "or set LEVY_METRICS_PRIVATE=1 if /metrics and the workers' metrics ports are reachable "
            "only from a private network"
        )
    if not env("DJANGO_HSTS_SECONDS", "0").isdigit():
        problems.append("DJANGO_HSTS_SECONDS must be a whole number of seconds")
    from levy.payments.secrets import key_problem  # the provider secrets' key: one rule, in its module

    if provider_key_problem := key_problem(env("LEVY_PROVIDER_SECRETS_KEY")):
        problems.append(provider_key_problem)
    return problems


if IS_PRODUCTION and (_problems := production_problems()):
    raise ImproperlyConfigured(
        "Levy refuses to start in production (DJANGO_ENV=production):\n" + "\n".join(f"  - {p}" for p in _problems)
    )

SECRET_KEY = env("DJANGO_SECRET_KEY") or DEVELOPMENT_SECRET_KEY
DEBUG = False if IS_PRODUCTION else env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if IS_PRODUCTION else "localhost,127.0.0.1")

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
    "django_htmx",
    "template_partials",
    "csp",
    "levy.common",
    "levy.accounts",
    "levy.estates",
    "levy.members",
    "levy.billing",
    "levy.wallets",
    "levy.payments",
    "levy.notifications",
    "levy.audit",
    "levy.api",
    "levy.monitoring",
    "levy.reports",
    "levy.web",
]

# Server-Timing (queries, SQL time, request time) on every response when
# LEVY_SERVER_TIMING is on; first, so that it times the whole request. Off by default.
LEVY_SERVER_TIMING = env_bool("LEVY_SERVER_TIMING", False)

MIDDLEWARE = [
    # The request id first, so every log line of the request carries it; then the
    # request metrics, so their time covers the rest of the stack.
    "levy.common.request_id.RequestIdMiddleware",
    # Under /api/, an error page produced anywhere below becomes the JSON error shape.
    "levy.api.outside.ApiJsonErrorsMiddleware",
    "levy.monitoring.middleware.RequestMetricsMiddleware",
    "levy.common.server_timing.ServerTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (collected, compressed, hashed) straight from the web process.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "levy.api.outside.LevyCommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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
                "csp.context_processors.nonce",
                "levy.web.context.layout",
            ],
            "builtins": ["levy.web.templatetags.levy", "template_partials.templatetags.partials"],
        },
    },
]

DATABASES = {"default": database_from_url(env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # test_<name of DATABASE_URL's database>, so that runs on different databases never share one.
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", f"test_{DATABASES['default']['NAME']}")}

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
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
# Production serves what `manage.py collectstatic` wrote: hashed names (cached for a
# year), gzip and Brotli copies. Development and tests read the apps' own files, so
# nothing needs collecting.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if IS_PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Third-party browser assets (htmx) come from npm, pinned by package-lock.json and
# installed by `npm ci` (scripts/_env.sh, the Dockerfile); they are served from here
# like the apps' own static files, never from a CDN.
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [("vendor/htmx", NODE_MODULES / "htmx.org" / "dist")]
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
WHITENOISE_AUTOREFRESH = not IS_PRODUCTION
# Source maps (14 of the 25 MB collected) are read only by browser developer tools:
# served as they are, not compressed. Pages refer to static files by their hashed
# names only, so the unhashed copies are not kept. Together these cut the CPU time of
# collectstatic from about 40 s to 9 s.
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = [*Compressor.SKIP_COMPRESS_EXTENSIONS, "map"]
WHITENOISE_KEEP_ONLY_HASHED_FILES = True

# --- HTTPS and security headers ----------------------------------------------------------------
# TLS ends at the reverse proxy, which tells Levy the original scheme in
# X-Forwarded-Proto (it must overwrite whatever the client sent). Plain HTTP is
# redirected to HTTPS, except the probes and the metrics scrape, which come from
# inside the network.
if IS_PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", IS_PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)/?$"]
SECURE_HSTS_SECONDS = int(env("DJANGO_HSTS_SECONDS", "31536000")) if IS_PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = IS_PRODUCTION
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = IS_PRODUCTION
# Origins (scheme and host, e.g. https://levy.example.com) allowed to POST forms such
# as the admin's, when they differ from the Host header the proxy passes on.
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS: list[str] = []
if not SECURE_HSTS_PRELOAD:
    # security.W021 asks for HSTS preloading. Preloading is a decision of whoever owns
    # the domain: browsers ship the list, so it takes months to undo, and it binds every
    # subdomain to HTTPS. It is opt-in (DJANGO_HSTS_PRELOAD=1), and this warning
    # stays silent until then.
    SILENCED_SYSTEM_CHECKS.append("security.W021")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # models.W040: SQLite (the demo) builds covering indexes without their INCLUDE
    # columns; they are there for PostgreSQL's index-only scans, which SQLite has no use for.
    SILENCED_SYSTEM_CHECKS.append("models.W040")

LEVY_DEFAULT_CURRENCY = env("LEVY_DEFAULT_CURRENCY", "NGN")

# --- the web pages -------------------------------------------------------------------------------
# Content-Security-Policy: scripts, styles, images and fonts from this site only; no
# inline script or style, no eval, no framing. htmx is served from /static/ and its own
# inline indicator style is switched off (levy/web/templates/web/base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
LOGIN_URL = "web:sign-in"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:sign-in"
# A browser session lasts two weeks from the last request, and ends with the browser
# when "keep me signed in" is not ticked (levy/web/views/auth.py).
SESSION_COOKIE_AGE = int(env("LEVY_SESSION_SECONDS", str(14 * 24 * 3600)))
SESSION_SAVE_EVERY_REQUEST = False
# Password reset and invitation links stay valid this long, and only until used.
PASSWORD_RESET_TIMEOUT = int(env("LEVY_PASSWORD_LINK_SECONDS", str(3 * 24 * 3600)))

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
    # Sign-in and token refresh (levy/accounts/signin_guard.py, decision 0017): failed
    # sign-ins and failed refreshes per client address — successful ones are never
    # counted, so a shared gateway's honest traffic stays far below — and refreshes
    # per person.
    "sign_in_failures": env("LEVY_RATE_SIGN_IN_FAILURES", "200/min"),
    "token_refresh_failures": env("LEVY_RATE_TOKEN_REFRESH_FAILURES", "200/min"),
    "token_refresh": env("LEVY_RATE_TOKEN_REFRESH", "30/min"),
    "acknowledge": env("LEVY_RATE_ACKNOWLEDGE", "60/min"),
    "dispute": env("LEVY_RATE_DISPUTE", "10/min"),
    "pay": env("LEVY_RATE_PAY", "30/min"),
    "credit": env("LEVY_RATE_CREDIT", "120/min"),
    "bill_create": env("LEVY_RATE_BILL_CREATE", "60/min"),
    "top_up": env("LEVY_RATE_TOP_UP", "20/min"),
    "top_up_return": env("LEVY_RATE_TOP_UP_RETURN", "60/min"),
    "webhook": env("LEVY_RATE_WEBHOOK", "600/min"),
    # "Forgot your password?" emails: per client address, and per email address asked for
    # (so nobody can flood someone's inbox with reset links).
    "password_reset": env("LEVY_RATE_PASSWORD_RESET", "20/hour"),
    "password_reset_email": env("LEVY_RATE_PASSWORD_RESET_EMAIL", "5/hour"),
}
LEVY_RATE_LIMITS_ENABLED = env_bool("LEVY_RATE_LIMITS_ENABLED", True)
# Per account, in the database: this many wrong passwords in a row (each within the
# memory of the one before) lock the account for the lockout; the right password does
# not open a locked account. An admin can unlock it sooner.
LEVY_SIGN_IN_LOCKOUT_FAILURES = int(env("LEVY_SIGN_IN_LOCKOUT_FAILURES", "10"))
LEVY_SIGN_IN_LOCKOUT_MINUTES = int(env("LEVY_SIGN_IN_LOCKOUT_MINUTES", "15"))
LEVY_SIGN_IN_FAILURE_MEMORY_MINUTES = int(env("LEVY_SIGN_IN_FAILURE_MEMORY_MINUTES", "60"))
# Addresses of the reverse proxies in front of the web processes (comma-separated). A
# request from one of them is attributed to the address it forwarded (X-Forwarded-For)
# for rate limits and the audit trail; from anyone else, to REMOTE_ADDR.
LEVY_TRUSTED_PROXIES = [p.strip() for p in env("LEVY_TRUSTED_PROXIES", "").split(",") if p.strip()]

# --- API -------------------------------------------------------------------------------------
API_RENDERERS = ["rest_framework.renderers.JSONRenderer"]
if DEBUG:
    API_RENDERERS.append("rest_framework.renderers.BrowsableAPIRenderer")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "levy.api.authentication.LevyJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": API_RENDERERS,
    "DEFAULT_PARSER_CLASSES": [
        "levy.api.parsers.SafeJSONParser",
        "levy.api.parsers.FormParserRefusingJSON",
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
    # Named here because two choice sets share the field name "status" (the bill's name
    # as before, the schedule's its own).
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "levy.billing.status.BillStatus",
        "ScheduleStatusEnum": "levy.billing.selectors.schedules.SCHEDULE_STATUSES",
        "TopUpStatusEnum": "levy.payments.models.TopUpStatus",
    },
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
# Celery's Django fixup closes every database connection around every task unless this
# is set; with it, only every this many tasks. Between those, levy/common/task_db.py
# applies CONN_MAX_AGE and the health checks around each task, as for a request.
CELERY_DB_REUSE_MAX = int(env("CELERY_DB_REUSE_MAX", "1000"))
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
    "sweep-top-ups": {
        "task": "levy.payments.tasks.sweep_top_ups",
        "schedule": float(env("LEVY_TOPUP_SWEEP_EVERY_SECONDS", "300")),
    },
    "payment-reminders": {
        "task": "levy.notifications.tasks.send_payment_reminders",
        "schedule": crontab(hour=int(env("LEVY_REMINDER_HOUR", "8")), minute=0),
    },
    # Recurring bills: each run issues what has come due (and what an outage missed).
    # A run that could not start before the next one is dropped (expires), not queued.
    "issue-scheduled-bills": {
        "task": "levy.billing.tasks.issue_scheduled_bills",
        "schedule": float(env("LEVY_SCHEDULE_EVERY_SECONDS", "900")),
        "options": {"expires": float(env("LEVY_SCHEDULE_EVERY_SECONDS", "900"))},
    },
    "issue-late-fees": {
        "task": "levy.billing.tasks.issue_late_fees",
        "schedule": float(env("LEVY_LATE_FEE_EVERY_SECONDS", "900")),
        "options": {"expires": float(env("LEVY_LATE_FEE_EVERY_SECONDS", "900"))},
    },
}
# A late fee is due this many days after it is charged (it can be paid after that too).
LEVY_LATE_FEE_PAY_DAYS = int(env("LEVY_LATE_FEE_PAY_DAYS", "14"))

# --- payment providers (docs/operations.md) ---------------------------------------------------
# Fernet key(s) sealing the estates' provider secrets; the first seals, all open. Required
# in production; development and tests use a key derived from a fixed string.
LEVY_PROVIDER_SECRETS_KEY = env("LEVY_PROVIDER_SECRETS_KEY")
LEVY_PAYSTACK_BASE_URL = env("LEVY_PAYSTACK_BASE_URL", "https://api.paystack.co")
LEVY_FLUTTERWAVE_BASE_URL = env("LEVY_FLUTTERWAVE_BASE_URL", "https://api.flutterwave.com")
LEVY_PROVIDER_TIMEOUT_SECONDS = float(env("LEVY_PROVIDER_TIMEOUT_SECONDS", "5"))
LEVY_PROVIDER_RETRIES = int(env("LEVY_PROVIDER_RETRIES", "1"))
LEVY_TOPUP_EXPIRE_MINUTES = int(env("LEVY_TOPUP_EXPIRE_MINUTES", "60"))
LEVY_TOPUP_SWEEP_MIN_AGE_SECONDS = int(env("LEVY_TOPUP_SWEEP_MIN_AGE_SECONDS", "120"))
# Where the provider sends the resident back after checkout (default: the API's return endpoint).
LEVY_TOPUP_RETURN_URL = env("LEVY_TOPUP_RETURN_URL")

# --- notifications -----------------------------------------------------------------------------
LEVY_NOTIFICATION_CHANNELS = [c for c in env("LEVY_NOTIFICATION_CHANNELS", "email").split(",") if c]
LEVY_FANOUT_CHUNK = int(env("LEVY_FANOUT_CHUNK", "5000"))
# An intent with at most this many recipients has its emails sent by the fan-out task
# itself; a larger one queues a sending task (0: always queue it).
LEVY_DELIVERY_INLINE_MAX = int(env("LEVY_DELIVERY_INLINE_MAX", "50"))
# Optional pause between fan-out chunks, to spread the write load of a huge estate.
LEVY_FANOUT_CHUNK_PAUSE_SECONDS = float(env("LEVY_FANOUT_CHUNK_PAUSE_SECONDS", "0"))
# Intents with few recipients (a receipt, the managers told of an acknowledgement) are
# delivered many per task: a commit sets a flag in the cache and sends one
# deliver_pending task only if the flag was not set; the task waits this long for more
# intents, clears the flag and delivers up to LEVY_NOTIFY_BATCH_MAX of them in one
# transaction (docs/decisions/0005). LEVY_NOTIFY_BATCH=0: one task per intent, as before.
LEVY_NOTIFY_BATCH = env_bool("LEVY_NOTIFY_BATCH", True)
LEVY_NOTIFY_BATCH_WAIT_MS = int(env("LEVY_NOTIFY_BATCH_WAIT_MS", "50"))
LEVY_NOTIFY_BATCH_MAX = int(env("LEVY_NOTIFY_BATCH_MAX", "100"))
# How long a flag outlives a wake-up task that never ran (a lost message): after it, the
# next commit sends another; the sweep delivers what such a loss left behind.
LEVY_NOTIFY_WAKE_TTL_SECONDS = int(env("LEVY_NOTIFY_WAKE_TTL_SECONDS", "10"))
LEVY_SWEEP_GRACE_SECONDS = int(env("LEVY_SWEEP_GRACE_SECONDS", "30"))
LEVY_SWEEP_REDISPATCH_SECONDS = int(env("LEVY_SWEEP_REDISPATCH_SECONDS", "300"))
# An intent whose fan-out failed this many times is left for a person (see last_error).
LEVY_INTENT_MAX_ATTEMPTS = int(env("LEVY_INTENT_MAX_ATTEMPTS", "10"))
LEVY_DELIVERY_MAX_ATTEMPTS = int(env("LEVY_DELIVERY_MAX_ATTEMPTS", "6"))
LEVY_DELIVERY_RETRY_BASE_SECONDS = int(env("LEVY_DELIVERY_RETRY_BASE_SECONDS", "60"))
LEVY_DELIVERY_STUCK_SECONDS = int(env("LEVY_DELIVERY_STUCK_SECONDS", "600"))
LEVY_REMINDER_OFFSETS_DAYS = [int(d) for d in env("LEVY_REMINDER_OFFSETS_DAYS", "-3,1,7").split(",") if d]
LEVY_REMINDER_CATCH_UP_DAYS = int(env("LEVY_REMINDER_CATCH_UP_DAYS", "2"))
# The address people reach Levy at: every link in an email (sign-in, invitations,
# password reset, a bill) starts with it. LEVY_SITE_URL is its former name.
LEVY_PUBLIC_URL = env("LEVY_PUBLIC_URL") or env("LEVY_SITE_URL", "http://127.0.0.1:8000/")
if not LEVY_PUBLIC_URL.endswith("/"):
    LEVY_PUBLIC_URL += "/"
LEVY_SITE_URL = LEVY_PUBLIC_URL
# A members import whose run has not finished after this long (its worker died) is
# taken over by the next delivery of its task (levy/members/imports.py).
LEVY_IMPORT_STALE_SECONDS = int(env("LEVY_IMPORT_STALE_SECONDS", "900"))
# Receipts and statements use DejaVu Sans from here when it is installed (Debian's
# fonts-dejavu-core), else the font that ships inside ReportLab (levy/reports/pdf.py).
LEVY_PDF_FONT_DIR = env("LEVY_PDF_FONT_DIR", "/usr/share/fonts/truetype/dejavu")

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = int(env("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Levy <no-reply@levy.test>")

# --- logs and metrics --------------------------------------------------------------------------
# One JSON object per line in production, readable text otherwise; both carry the
# request id (and, in a Celery worker, the task's name and id).
LOG_FORMAT = env("LOG_FORMAT", "json" if IS_PRODUCTION else "text")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}")
# One log line per request (logger levy.request: method, path, route, status, duration);
# on in production. runserver prints its own.
LEVY_REQUEST_LOG = env_bool("LEVY_REQUEST_LOG", IS_PRODUCTION)
# If set, /metrics (and a worker's metrics port) answers only "Authorization: Bearer <token>".
# Production refuses to start without it unless LEVY_METRICS_PRIVATE=1 says that the
# metrics are served on a private address only (production_problems above).
LEVY_METRICS_TOKEN = env("LEVY_METRICS_TOKEN")
LEVY_METRICS_PRIVATE = env_bool("LEVY_METRICS_PRIVATE", False)
# If set, each Celery worker serves its own metrics on this port (see docs/operations.md).
if env("LEVY_WORKER_METRICS_PORT") and not env("LEVY_WORKER_METRICS_PORT").isdigit():
    raise ImproperlyConfigured("LEVY_WORKER_METRICS_PORT must be a port number")
LEVY_WORKER_METRICS_PORT = int(env("LEVY_WORKER_METRICS_PORT")) if env("LEVY_WORKER_METRICS_PORT") else None
LEVY_WORKER_METRICS_ADDR = env("LEVY_WORKER_METRICS_ADDR", "0.0.0.0")  # noqa: S104 - scraped from another host

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_context": {"()": "levy.common.logs.RequestContextFilter"},
        "client_error_traceback": {"()": "levy.common.logs.ClientErrorTracebackFilter"},
    },
    "formatters": {
        "json": {"()": "levy.common.logs.JsonFormatter"},
        "text": {"()": "levy.common.logs.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_context", "client_error_traceback"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # In-process tasks (the demo) would log a line per task in the web server's output.
    "loggers": {"celery.app.trace": {"level": "WARNING" if CELERY_TASK_ALWAYS_EAGER else "INFO"}},
}
