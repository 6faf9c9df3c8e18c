"""Browser tests: Playwright for Python driving Debian's Chromium (/usr/bin/chromium,
installed by scripts/test.sh when missing; never a browser download) against a live
server on the test database (PostgreSQL).

Fixtures:

- ``page``: a fresh browser tab on the live server; ``page.goto(live("/sign-in/"))``.
- ``live``: turns a path into an address on the live server.
- ``sign_in(page, user)``: signs in through the sign-in form, as a person does.
- ``shoot(page, name)``: saves screenshots at 1280 and 390 px wide to
  artifacts/screenshots/<name>-1280.png and -390.png, and runs axe-core on the page:
  any serious or critical violation fails the test.

The data a test builds is committed (``transactional_db``) so the server's thread sees it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import TEST_PASSWORD

# Playwright's synchronous API runs an event loop in this thread; Django's ORM, used by
# the test itself between browser steps, refuses to run beside one unless told to.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("LEVY_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
WIDTHS = (1280, 390)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def live(live_server: Any, transactional_db: None) -> Callable[[str], str]:
    return lambda path: f"{live_server.url}{path}"


@pytest.fixture
def page(chromium: Any, live: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": WIDTHS[0], "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    yield tab
    context.close()
    assert not problems, f"script errors or CSP violations in the browser: {problems}"


def sign_in(page: Any, live: Callable[[str], str], user: Any, password: str = TEST_PASSWORD) -> None:
    page.goto(live("/sign-in/"))
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state("networkidle")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    assert AXE.exists(), "node_modules/axe-core is missing: run npm ci (scripts/_env.sh does)"
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def shoot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Screenshots at each width, and no serious or critical axe-core violation at either."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    found: dict[int, list[dict[str, Any]]] = {}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=full_page)
        violations = axe_violations(page)
        if violations:
            found[width] = violations
    page.set_viewport_size(original)
    assert not found, f"axe-core on {name}: {json.dumps(found, indent=1)}"
