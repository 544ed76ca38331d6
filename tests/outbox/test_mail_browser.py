"""The HTML mail in a real browser: the button opens the right address, the code is there to
read, a 375 px phone shows it all without scrolling sideways, and axe-core finds nothing wrong,
in English and French. The mails are the real templates' output (test_mail_layout.py checks
their structure without a browser).

Chromium is Debian's, driven by Playwright's client; the mail is loaded with set_content and
its logo, when it has one, is answered by the test itself: nothing leaves 127.0.0.1.

With UPDATE_DOC_SCREENSHOTS=1 the English reset-link and temporary-password mails, as a phone
shows them, are also written to docs/screenshots/ for the README:

    UPDATE_DOC_SCREENSHOTS=1 .venv/bin/python -m pytest tests/outbox/test_mail_browser.py
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service import create_app
from service.platform.extensions import db
from tests.conftest import test_settings as settings_for
from tests.outbox.mail_samples import SampleMail, sample_mail
from tests.web.browsing import (
    AXE,
    DOC_SCREENSHOTS,
    SCREENSHOTS,
    launch_chromium,
    needs_axe,
    sync_api,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

expect = sync_api.expect

PUBLIC_BASE_URL = "https://account.example.com"
LOGO_URL = "https://cdn.example.com/logo.svg"
LOGO_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="48" viewBox="0 0 200 48">'
    '<rect width="48" height="48" rx="10" fill="#0b5394"/><path d="M24 10v28M10 24h28" stroke="#fff" stroke-width="7"/>'
    '<text x="58" y="31" font-family="sans-serif" font-size="17" font-weight="bold" fill="#1d1d1f">Canadian Insulin</text>'
    "</svg>"
)
PHONE = {"width": 375, "height": 740}
LANGUAGES = ("en", "fr")
BUTTON_LABELS = {
    ("reset_link", "en"): "Choose a new password",
    ("reset_link", "fr"): "Choisissez un nouveau mot de passe",
}
# The mails customers act on, and the notice everyone gets after a change.
CHECKED = ("reset_link", "temporary_password", "password_changed")
DOC_MAILS = {"reset_link": "mail-reset-link", "temporary_password": "mail-temporary-password"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture
def mail_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(settings_for(f"sqlite:///{tmp_path / f'm{len(made)}.db'}", PUBLIC_BASE_URL=PUBLIC_BASE_URL, **overrides))
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def open_mail(browser: Any) -> Iterator[Callable[[SampleMail], Any]]:
    """Shows a mail's HTML in a fresh phone-sized tab, as a mail client would: no script of its
    own, the logo answered locally, any other request refused."""
    contexts: list[Any] = []
    refused: list[str] = []

    def answer(route: Any) -> None:
        if route.request.url == LOGO_URL:
            route.fulfill(status=200, content_type="image/svg+xml", body=LOGO_SVG)
        else:
            refused.append(route.request.url)
            route.abort()

    def show(sample: SampleMail) -> Any:
        context = browser.new_context(viewport=PHONE, java_script_enabled=True)
        context.set_default_timeout(10_000)
        context.route("**/*", answer)
        contexts.append(context)
        page = context.new_page()
        assert sample.email.html_body
        page.set_content(sample.email.html_body, wait_until="load")
        return page

    yield show
    for context in contexts:
        context.close()
    assert not refused, f"the mail asked for something from elsewhere: {refused}"


def render(app: Flask, name: str, language: str) -> SampleMail:
    with app.app_context():
        return sample_mail(name, language)


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- what a reader sees -------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_reset_mails_button_opens_the_link_and_its_code_is_there_to_read(
    mail_app: Callable[..., Flask], open_mail: Callable[[SampleMail], Any], language: str
) -> None:
    sample = render(mail_app(), "reset_link", language)
    page = open_mail(sample)
    button = page.get_by_role("link", name=BUTTON_LABELS["reset_link", language], exact=True)
    expect(button).to_have_attribute("href", sample.button_href)
    expect(button).to_be_visible()
    box = button.bounding_box()
    # A target a thumb can hit (WCAG 2.5.5's 44 px), not a line of underlined words.
    assert box["height"] >= 44 and box["width"] >= 120, box
    painted = button.evaluate("a => getComputedStyle(a.parentElement).backgroundColor")
    assert painted == "rgb(11, 83, 148)"  # the shop's colour, #0b5394

    code = page.get_by_text(sample.secret or "", exact=True)
    expect(code).to_be_visible()
    looks = code.evaluate(
        "e => { const s = getComputedStyle(e); return {font: s.fontFamily, size: parseFloat(s.fontSize),"
        " spacing: parseFloat(s.letterSpacing), border: s.borderTopStyle}; }"
    )
    assert "monospace" in looks["font"] and looks["size"] >= 24 and looks["spacing"] >= 2, looks
    assert looks["border"] == "dashed"
    expect(page.locator("h1")).to_have_text(sample.email.subject)
    expect(page.locator('a[href^="tel:"]')).to_have_text("1-844-560-7790")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_temporary_password_is_there_to_read(
    mail_app: Callable[..., Flask], open_mail: Callable[[SampleMail], Any], language: str
) -> None:
    sample = render(mail_app(), "temporary_password", language)
    page = open_mail(sample)
    secret = page.get_by_text(sample.secret or "", exact=True)
    expect(secret).to_be_visible()
    # Read whole on a phone: the box is on one line, inside the screen.
    box = secret.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert secret.evaluate("e => e.getClientRects().length") == 1


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", CHECKED)
def test_a_phone_shows_the_mail_without_scrolling_sideways(
    mail_app: Callable[..., Flask], open_mail: Callable[[SampleMail], Any], name: str, language: str
) -> None:
    page = open_mail(render(mail_app(LOGO_URL=LOGO_URL), name, language))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # The logo arrived (from the test) and shows, named by its alt text.
    logo = page.get_by_role("img", name="Canadian Insulin")
    expect(logo).to_be_visible()
    assert logo.evaluate("img => img.naturalWidth") == 200
    screenshot(page, f"mail-{name}.{language}.375px")


# --- axe-core ------------------------------------------------------------------------------------

# The two rules about a page's landmarks do not fit a mail: a mail client shows the mail inside
# its own page, which has the one <main>, so the mail is an article (role="article", the email's
# subject its name), as mail written for screen readers is. Every other rule runs.
NOT_FOR_MAIL = ("landmark-one-main", "region")


def run_axe(page: Any) -> dict[str, Any]:
    """axe-core's default rules (WCAG 2.x A and AA, and best practices) but NOT_FOR_MAIL."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async (skipped) => {
            const rules = Object.fromEntries(skipped.map(id => [id, {enabled: false}]));
            const results = await axe.run(document, {rules, resultTypes: ["violations", "incomplete"]});
            const brief = found => found.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
            }));
            return {
                violations: brief(results.violations), incomplete: brief(results.incomplete),
                passes: results.passes.length,
            };
        }""",
        list(NOT_FOR_MAIL),
    )


@needs_axe
@pytest.mark.parametrize("logo", ["", LOGO_URL], ids=["name", "logo"])
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", CHECKED)
def test_axe_finds_nothing_wrong_with_the_mail(
    mail_app: Callable[..., Flask], open_mail: Callable[[SampleMail], Any], name: str, language: str, logo: str
) -> None:
    page = open_mail(render(mail_app(LOGO_URL=logo), name, language))
    results = run_axe(page)
    assert results["passes"] >= 10, f"axe-core checked next to nothing: {results}"
    for found in results["incomplete"]:
        print(f"axe {name} {language} to review: {found['impact']} {found['id']}: {found['help']} {found['nodes']}")
    # Every rule, whatever its impact: a mail is small enough to get all of them right.
    assert results["violations"] == [], results["violations"]


# --- screenshots for the README -------------------------------------------------------------------


def test_the_mails_are_photographed_for_the_readme(
    mail_app: Callable[..., Flask], open_mail: Callable[[SampleMail], Any]
) -> None:
    app = mail_app()
    for name, picture in DOC_MAILS.items():
        page = open_mail(render(app, name, "en"))
        path = screenshot(page, f"{picture}.en")
        if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
            DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (DOC_SCREENSHOTS / f"{picture}.png").write_bytes(path.read_bytes())
