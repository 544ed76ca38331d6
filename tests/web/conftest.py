"""The browser tests' fixtures: a mail sink, Chromium, fresh profiles and tabs on the module's
`server` (each browser test module starts its own with tests.web.browsing.serve).

Playwright is imported only when a browser test asks for these, so the page tests beside them
run without it; tests/web/browsing.py skips a browser module when Playwright or Chromium is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import SmtpSink

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

    from tests.web.browsing import Server


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    smtp = SmtpSink()
    smtp.start()
    yield smtp
    smtp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from tests.web.browsing import launch_chromium

    yield from launch_chromium()


@pytest.fixture
def new_context(browser: Browser, server: Server) -> Iterator[Callable[..., BrowserContext]]:
    """Opens fresh browser profiles (own cookies) on the server; all closed after the test."""
    opened: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        settings = {"base_url": server.base, "locale": "en-US", "viewport": {"width": 1000, "height": 800}}
        context = browser.new_context(**{**settings, **options})
        context.set_default_timeout(10_000)
        opened.append(context)
        return context

    yield make
    for context in opened:
        context.close()


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    """A tab in a fresh profile, with the pages' Content-Security-Policy in force."""
    return new_context().new_page()
