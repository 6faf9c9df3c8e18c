# syntax=docker/dockerfile:1
# Levy's image. Its default command is the web process (gunicorn); the Celery worker,
# beat and the migrations run the same image with another command (see compose.yaml).
# The pages' browser assets (htmx), pinned by package-lock.json.
FROM node:20-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 levy \
    && useradd --system --uid 10001 --gid levy --home-dir /app --no-create-home --shell /usr/sbin/nologin levy

WORKDIR /app

# DejaVu Sans for receipts and statements (it has the accents of Yoruba, Igbo and Hausa
# names); without it the PDFs use the font inside ReportLab (levy/reports/pdf.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, so that this layer is rebuilt only when the lock file changes.
COPY requirements.lock ./
RUN python -m venv /opt/venv && pip install -r requirements.lock

COPY . .
COPY --from=assets /assets/node_modules ./node_modules

# Static files are collected into the image (hashed, compressed). The production
# settings refuse to load without their secrets, so this one step gets throwaway
# values: collectstatic connects to neither PostgreSQL nor Redis, and none of these
# values is part of the image's environment.
RUN DJANGO_ENV=production \
    DJANGO_SECRET_KEY=build-only-key-for-collectstatic-never-used-to-sign-anything \
    DATABASE_URL=postgres://build@localhost:5432/build \
    REDIS_URL=redis://localhost:6379/0 \
    DJANGO_ALLOWED_HOSTS=localhost \
    LEVY_METRICS_PRIVATE=1 \
    python manage.py collectstatic --noinput \
    && mkdir -p /var/lib/levy \
    && chown levy:levy /var/lib/levy

# The code and the static files belong to root: the service can read them, not change them.
USER levy
ENV LEVY_BIND=0.0.0.0:8000
EXPOSE 8000
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"]
