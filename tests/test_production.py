"""Production mode as deployed.

The settings refuse to load without their secrets, the deploy check is clean, and
gunicorn started with the Procfile's web command redirects plain HTTP to HTTPS (but
not the probes), sends the security headers and serves the API docs' static files
under hashed names with a far-future cache header.

Everything runs in subprocesses with an environment built from scratch; the test
process itself stays in development mode and needs no database.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from django.conf import settings

from levy.payments.secrets import development_key
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PORTS = range(8100, 8200)
REFUSAL = "django.core.exceptions.ImproperlyConfigured: Levy refuses to start in production (DJANGO_ENV=production):"
HTTPS = {"X-Forwarded-Proto": "https"}
METRICS_TOKEN = secrets.token_urlsafe(24)


def scratch_url(variable: str, default: str, path: str) -> str:
    """The host of this run's PostgreSQL/Redis, with a path of our own."""
    parsed = urlparse(os.environ.get(variable) or default)
    return urlunparse(parsed._replace(path=path))


def production_env(**overrides: str | None) -> dict[str, str]:
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        # The maintenance database: it always exists, and /readyz only runs SELECT 1.
        "DATABASE_URL": scratch_url("DATABASE_URL", "postgres://root@127.0.0.1:5432/levy", "/postgres"),
        "REDIS_URL": scratch_url("REDIS_URL", "redis://127.0.0.1:6379/0", "/2"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LEVY_PROVIDER_SECRETS_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "LEVY_METRICS_TOKEN": METRICS_TOKEN,
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run(args: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


SETUP = "import django; django.setup()"


# --- the settings refuse to load ------------------------------------------------------------------

WEAK_KEY = "abcdefghij" * 4 + "abcdefghi"  # 49 characters


@dataclass(frozen=True)
class Refusal:
    overrides: dict[str, str | None]
    problems: tuple[str, ...]


REFUSALS = {
    "secret key missing": Refusal({"DJANGO_SECRET_KEY": None}, ("DJANGO_SECRET_KEY is not set",)),
    "secret key of 49 characters": Refusal(
        {"DJANGO_SECRET_KEY": WEAK_KEY}, ("DJANGO_SECRET_KEY is too weak (49 characters)",)
    ),
    "secret key of one repeated character": Refusal(
        {"DJANGO_SECRET_KEY": "x" * 60}, ("DJANGO_SECRET_KEY is too weak (60 characters)",)
    ),
    "development secret key": Refusal(
        {"DJANGO_SECRET_KEY": settings.DEVELOPMENT_SECRET_KEY}, ("DJANGO_SECRET_KEY is the development key",)
    ),
    "database missing": Refusal({"DATABASE_URL": None}, ("DATABASE_URL is not set",)),
    "database not PostgreSQL": Refusal(
        {"DATABASE_URL": "sqlite:////tmp/levy.sqlite3"},
        ("DATABASE_URL must be a PostgreSQL URL (postgres://…); its scheme is 'sqlite'",),
    ),
    "database without a name": Refusal(
        {"DATABASE_URL": "postgres://root@127.0.0.1:5432/"}, ("DATABASE_URL names no database",)
    ),
    "redis missing": Refusal({"REDIS_URL": None}, ("REDIS_URL is not set",)),
    "redis not Redis": Refusal(
        {"REDIS_URL": "memcached://127.0.0.1:11211"},
        ("REDIS_URL must be a Redis URL (redis://, rediss:// or unix://)",),
    ),
    "allowed hosts missing": Refusal({"DJANGO_ALLOWED_HOSTS": None}, ("DJANGO_ALLOWED_HOSTS is not set",)),
    "debug on": Refusal({"DJANGO_DEBUG": "1"}, ("DJANGO_DEBUG is on: production never runs with DEBUG",)),
    "HSTS seconds not a number": Refusal(
        {"DJANGO_HSTS_SECONDS": "one year"}, ("DJANGO_HSTS_SECONDS must be a whole number of seconds",)
    ),
    "provider secrets key missing": Refusal(
        {"LEVY_PROVIDER_SECRETS_KEY": None}, ("LEVY_PROVIDER_SECRETS_KEY is not set",)
    ),
    "provider secrets key not a Fernet key": Refusal(
        {"LEVY_PROVIDER_SECRETS_KEY": "not-a-key"}, ("LEVY_PROVIDER_SECRETS_KEY holds a key that is not a Fernet key",)
    ),
    "development provider secrets key": Refusal(
        {"LEVY_PROVIDER_SECRETS_KEY": development_key()}, ("LEVY_PROVIDER_SECRETS_KEY is the development key",)
    ),
    "metrics token missing": Refusal(
        {"LEVY_METRICS_TOKEN": None},
        (
            "LEVY_METRICS_TOKEN is not set (a random string Prometheus sends as a Bearer token); or set "
            "LEVY_METRICS_PRIVATE=1",
        ),
    ),
    "everything missing": Refusal(
        {
            "DJANGO_SECRET_KEY": None,
            "DATABASE_URL": None,
            "REDIS_URL": None,
            "DJANGO_ALLOWED_HOSTS": None,
            "LEVY_METRICS_TOKEN": None,
        },
        (
            "DJANGO_SECRET_KEY is not set",
            "DATABASE_URL is not set",
            "REDIS_URL is not set",
            "DJANGO_ALLOWED_HOSTS is not set",
            "LEVY_METRICS_TOKEN is not set",
        ),
    ),
}


CHECK_DEPLOY = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
# Only the Swagger UI's files (admin, DRF and Redoc are skipped), so that compressing
# them stays quick; the storage and its pipeline are production's.
COLLECTSTATIC = [sys.executable, "manage.py", "collectstatic", "--noinput"]
COLLECTSTATIC += ["--ignore", "admin", "--ignore", "rest_framework", "--ignore", "redoc"]

Results = dict[str, "Future[subprocess.CompletedProcess[str]]"]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("production")


@pytest.fixture(scope="module")
def results(work: Path) -> Iterator[Results]:
    """Every subprocess of this module, started at once (each is its own interpreter)."""
    # The longest first.
    jobs = {"collectstatic": (COLLECTSTATIC, production_env(DJANGO_STATIC_ROOT=str(work / "static")))}
    for name, case in REFUSALS.items():
        jobs[name] = ([sys.executable, "-c", SETUP], production_env(**case.overrides))
    jobs["complete"] = ([sys.executable, "-c", SETUP], production_env())
    jobs["unknown DJANGO_ENV"] = ([sys.executable, "-c", SETUP], production_env(DJANGO_ENV="prod"))
    jobs["check --deploy"] = (CHECK_DEPLOY, production_env())
    jobs["check --deploy, weakened"] = (
        CHECK_DEPLOY,
        production_env(DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_HSTS_PRELOAD="1"),
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield {name: pool.submit(run, args, env) for name, (args, env) in jobs.items()}


def test_a_complete_production_environment_loads(results: Results) -> None:
    result = results["complete"].result()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("case", list(REFUSALS))
def test_settings_refuse_to_load(case: str, results: Results) -> None:
    result = results[case].result()
    assert result.returncode == 1, result.stderr
    message = result.stderr[result.stderr.index(REFUSAL) :]
    listed = [line.removeprefix("  - ") for line in message.splitlines()[1:]]
    # Exactly the expected problems, each on its own line, and nothing else.
    assert len(listed) == len(REFUSALS[case].problems), message
    for line, problem in zip(listed, REFUSALS[case].problems, strict=True):
        assert line.startswith(problem), message
    assert WEAK_KEY not in result.stderr  # a secret is never echoed


def test_an_unknown_environment_name_is_refused(results: Results) -> None:
    result = results["unknown DJANGO_ENV"].result()
    assert result.returncode == 1
    assert "ImproperlyConfigured: DJANGO_ENV must be one of development, production, not 'prod'" in result.stderr


# --- manage.py check --deploy --------------------------------------------------------------------


def test_deploy_check_reports_no_issues(results: Results) -> None:
    result = results["check --deploy"].result()
    assert result.returncode == 0, result.stdout + result.stderr
    # One silenced check: HSTS preloading (security.W021), opt-in — see config/settings.py.
    assert result.stdout.strip() == "System check identified no issues (1 silenced)."
    assert result.stderr == ""


def test_deploy_check_notices_a_weakened_setting(results: Results) -> None:
    result = results["check --deploy, weakened"].result()
    assert result.returncode == 1
    issues = re.findall(r"\(security\.W\d+\)", result.stderr)
    assert issues == ["(security.W008)"], result.stderr
    # With preloading on, nothing is silenced.
    assert result.stderr.strip().endswith("System check identified 1 issue (0 silenced).")


# --- gunicorn in production mode ------------------------------------------------------------------


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Server:
    port: int
    home: Path
    log: Path

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(work: Path, results: Results) -> Iterator[Server]:
    """The Procfile's web process in production mode, after collectstatic."""
    collect = results["collectstatic"].result()
    assert collect.returncode == 0, collect.stdout + collect.stderr

    env = production_env(DJANGO_STATIC_ROOT=str(work / "static"), HOME=str(work))
    port = free_port(PORTS)
    env.update(LEVY_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1")
    log = work / "gunicorn.log"
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: S603 - the Procfile's own command
            ["bash", "-c", f"exec {procfile()['web']}"],  # noqa: S607
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port=port, home=work, log=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"gunicorn exited:\n{log.read_text()}"
            try:
                if server.get("/healthz").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"gunicorn did not answer:\n{log.read_text()}"
            time.sleep(0.2)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_plain_http_is_redirected_to_https(server: Server) -> None:
    response = server.get("/api/v1/me/?page=2")
    assert response.status == 301
    assert response.headers["Location"] == f"https://127.0.0.1:{server.port}/api/v1/me/?page=2"
    assert "Strict-Transport-Security" not in response.headers  # HSTS only over HTTPS


def test_probes_and_metrics_are_not_redirected(server: Server) -> None:
    healthz = server.get("/healthz")
    assert healthz.status == 200
    assert json.loads(healthz.body) == {"status": "ok"}

    readyz = server.get("/readyz")
    assert readyz.status == 200, readyz.body
    assert json.loads(readyz.body) == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}

    metrics = server.get("/metrics")
    assert metrics.status != 301
    assert "Location" not in metrics.headers


def test_https_responses_carry_the_security_headers(server: Server) -> None:
    response = server.get("/api/v1/me/", HTTPS)
    assert response.status == 401  # reached the view: not redirected, not signed in
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_debug_is_off(server: Server) -> None:
    response = server.get("/no-such-page/", HTTPS)
    assert response.status == 404
    # DEBUG's technical 404 page lists the URL patterns of config.urls.
    assert b"config.urls" not in response.body
    assert b"api/v1/" not in response.body


def test_swagger_ui_is_served_with_hashed_static_files(server: Server) -> None:
    page = server.get("/api/docs/", HTTPS)
    assert page.status == 200
    assets = re.findall(r"""(?:src|href)="(/static/[^"]+)\"""", page.body.decode())
    names = {asset.rsplit("/", 1)[1] for asset in assets}
    assert {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"} <= {
        re.sub(r"\.[0-9a-f]{12}\.", ".", name) for name in names
    }, assets
    for asset in assets:
        assert re.search(r"\.[0-9a-f]{12}\.(js|css|png)$", asset), f"{asset} has no content hash"
        response = server.get(asset, {**HTTPS, "Accept-Encoding": "gzip"})
        assert response.status == 200, asset
        assert response.headers["Cache-Control"] == "max-age=315360000, public, immutable", asset

    bundle = next(asset for asset in assets if "swagger-ui-bundle." in asset)
    compressed = server.get(bundle, {**HTTPS, "Accept-Encoding": "br, gzip"})
    assert compressed.headers["Content-Encoding"] == "br"
    assert compressed.headers["Content-Type"].startswith("text/javascript")
    plain = server.get(bundle, HTTPS)
    assert "Content-Encoding" not in plain.headers
    assert len(compressed.body) < len(plain.body) / 3


def test_gunicorn_opens_no_control_socket_in_home(server: Server) -> None:
    # gunicorn's default (~/.gunicorn/gunicorn.ctl) is shared by every gunicorn of a user.
    assert not (server.home / ".gunicorn").exists()
    assert "Control socket" not in server.log.read_text()


# --- every error under /api/ is JSON, whoever answers it (issue 15, items 1, 8 and 9) ------------


def assert_json_error(response: Response, status: int, code: str) -> dict[str, object]:
    assert response.status == status, (response.status, response.body[:300])
    assert response.headers["Content-Type"] == "application/json", response.headers
    body = json.loads(response.body)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body


def new_log_text(server: Server, since: int) -> str:
    return server.log.read_text()[since:]


def test_an_oversized_body_is_413_in_the_error_shape_and_logged_without_a_traceback(server: Server) -> None:
    mark = len(server.log.read_text())
    body = json.dumps({"email": "someone@example.test", "password": "x" * 2_700_000}).encode()
    response = server.request(
        "POST", "/api/v1/auth/token/", body, {**HTTPS, "Content-Type": "application/json", "Host": "127.0.0.1"}
    )
    assert_json_error(response, 413, "request_too_large")
    time.sleep(0.3)
    log = new_log_text(server, mark)
    assert "RequestDataTooBig" in log
    assert "Traceback" not in log
    assert "server_error" not in log


def test_gunicorns_own_refusals_are_json(server: Server) -> None:
    too_long = server.get("/api/v1/me/?q=" + "x" * 5000, HTTPS)
    assert_json_error(too_long, 414, "request_line_too_long")
    headers = {**HTTPS, **{f"X-Filler-{i}": "y" for i in range(120)}}
    assert_json_error(server.get("/api/v1/me/", headers), 431, "request_headers_too_large")
    # The server still answers normally afterwards.
    assert server.get("/healthz").status == 200


def test_errors_outside_the_views_are_json_under_api(server: Server) -> None:
    unknown = assert_json_error(server.get("/api/v1/no-such-thing/", HTTPS), 404, "not_found")
    assert unknown["error"]["message"] == "Not found."
    mark = len(server.log.read_text())
    assert_json_error(server.get("/api/v1/me/", {**HTTPS, "Host": "evil.example"}), 400, "invalid_host")
    time.sleep(0.3)
    log = new_log_text(server, mark)
    assert "Invalid HTTP_HOST header" in log
    assert "Traceback" not in log
    no_slash = server.request("POST", "/api/v1/auth/token", b"{}", {**HTTPS, "Content-Type": "application/json"})
    body = assert_json_error(no_slash, 404, "not_found")
    assert body["error"]["details"] == {"path": "/api/v1/auth/token/"}
    # Outside /api/, Django's pages stay HTML.
    page = server.get("/no-such-page/", HTTPS)
    assert page.status == 404
    assert page.headers["Content-Type"].startswith("text/html")


def test_metrics_need_the_token_in_production(server: Server) -> None:
    assert server.get("/metrics").status == 401
    assert server.get("/metrics", {"Authorization": "Bearer wrong"}).status == 401
    scraped = server.get("/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status == 200
    assert b"levy_" in scraped.body


# --- the environment file lists every variable -----------------------------------------------------

READS = re.compile(
    r"""\b(?:env|env_bool|env_list|os\.environ\.get)\(\s*["']([A-Z][A-Z0-9_]+)["']|os\.environ\[["']([A-Z][A-Z0-9_]+)"""
)
NOT_DEPLOYMENT = {"DJANGO_SETTINGS_MODULE", "TEST_DATABASE_NAME"}


def test_env_example_lists_every_variable() -> None:
    sources = [ROOT / "config" / "settings.py", ROOT / "config" / "gunicorn.conf.py"]
    sources += [path for path in (ROOT / "levy").rglob("*.py") if "management" not in path.parts]
    read = {name for path in sources for match in READS.findall(path.read_text()) for name in match if name}
    example = (ROOT / "deploy" / "levy.env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert read - NOT_DEPLOYMENT - listed == set()
    assert listed - read == set()
