from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"


@pytest.fixture
def page(monkeypatch):
    """Return a Playwright page in headless Chromium; screenshots go to test-artifacts/admin/."""
    if not CHROMIUM.exists():
        reason = f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("IDEMPOTENCY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"IDEMPOTENCY_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    # Playwright's sync API runs an asyncio loop in this thread, and Django refuses ORM calls
    # from a thread with a running loop; the test's own queries are plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(15_000)
        yield context.new_page()
        context.close()
        browser.close()
        # The test's queries ran while Playwright's loop owned the thread; their connection is
        # closed here, or PostgreSQL refuses to drop the test database at the end of the run.
        connections.close_all()


@pytest.fixture
def screenshot(page):
    """Return a function saving a full-page screenshot as test-artifacts/admin/<name>.png."""

    def save(name):
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
