"""In a real browser: the reset by link, the help page, a used link, the console's reset, the
keyboard, a 320 px screen, axe-core on every page in English and French (the console's desk
overview included), and screenshots.

Chromium (Debian's, never a downloaded one) is driven by Playwright's client against one
gunicorn server for the whole module, with mail going to a real SMTP sink on loopback.
Nothing leaves 127.0.0.1.

Screenshots land in tests/screenshots/ (git-ignored). With UPDATE_DOC_SCREENSHOTS=1 the English
ones of each page are also copied to docs/screenshots/ for the README:

    UPDATE_DOC_SCREENSHOTS=1 .venv/bin/python -m pytest tests/web/test_browser.py tests/web/test_browser_flows.py

The server, the browser and their helpers are in tests/web/browsing.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, SmtpSink
from tests.processes import call, flask
from tests.web.browsing import (
    LANGUAGES,
    MAIL_WAIT_SECONDS,
    BrowserContext,
    Page,
    Server,
    blocking_axe_findings,
    copy_doc_screenshots,
    csp_refusals,
    expect,
    needs_axe,
    request_link,
    screenshot,
    serve,
    verify,
    wait_for_link,
    wait_for_subject,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

AGENT_PASSWORD = "agent horse battery staple"
TOUR_ACCOUNT = ("lea", "lea@example.com")  # the account the page tours ask resets for
SIGN_IN_URL = "https://shop.example.com/login"  # never opened: the done page only links to it

# Every page, by the name its screenshots get. The English screenshot of each one named in
# DOC_PAGES goes to docs/screenshots/ (the error state is the same page as reset-password-new).
CUSTOMER_PAGES = (
    "reset-password", "reset-password-sent", "reset-password-new", "reset-password-new-error",
    "reset-password-done", "reset-password-invalid-link", "login-help",
)
CONSOLE_PAGES = (
    "support-login", "support-search", "support-account", "support-confirm", "support-overview",
    "support-supervisors-only",
)
DOC_PAGES = tuple(name for name in CUSTOMER_PAGES + CONSOLE_PAGES if name != "reset-password-new-error")


def a_month_at_the_desk(database_url: str) -> None:
    """Thirty days of used resets, mail, throttles, freezes and agents' actions, written straight
    into the database, so that the overview shows a desk at work. A seeded generator draws them:
    the same every run."""
    import random
    from datetime import timedelta

    from sqlalchemy import select

    from service import create_app
    from service.events import audit
    from service.models import Account, PasswordReset
    from service.platform.clock import utcnow
    from service.platform.extensions import db
    from tests.conftest import test_settings

    draw = random.Random(13)
    routes = (("self", "link", "reset_link"), ("self", "link", "reset_code"),
              ("self", "temporary_password", "temporary_password"), ("agent:alice", "link", "reset_link"))
    app = create_app(test_settings(database_url))
    with app.app_context():
        account_id = db.session.scalar(select(Account.id).where(Account.username == "kim"))
        now = utcnow()
        for days_ago in range(1, 30):
            that_day = now - timedelta(days=days_ago)
            weekend = that_day.weekday() >= 5
            for (requested_by, method, via), most in zip(routes, (9, 4, 2, 3), strict=True):
                for _ in range(draw.randint(0, most // 2 if weekend else most)):
                    used_at = that_day - timedelta(minutes=draw.randint(0, 600))
                    db.session.add(PasswordReset(
                        account_id=account_id, method=method, requested_by=requested_by, secret_hash="seeded",
                        created_at=used_at - timedelta(minutes=10), expires_at=used_at + timedelta(hours=1),
                        used_at=used_at, used_via=via,
                    ))
            for event_type, actor, most in (
                ("mail.sent", "outbox", 16), ("mail.failed", "outbox", 1), ("sign_in.throttled", "self", 3),
                ("account.frozen", "agent:bob", 1), ("reset.issued", "agent:alice", 3),
                ("account.unlocked", "agent:bob", 2), ("account.email_change_requested", "agent:alice", 1),
            ):
                for _ in range(draw.randint(0, most)):
                    audit.record_event(db.session, event_type, actor=actor, ip=None, now=that_day)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sink: SmtpSink) -> Iterator[Server]:
    """jane, kim, lea, agents alice (a supervisor) and bob, a client key, and a month of the
    desk's work for the overview to show; the done page links to SIGN_IN_URL."""

    def add_agents(env: dict[str, str]) -> None:
        flask(
            env, "agents", "create", "alice", "alice@shop.example", "--password-stdin", "--supervisor",
            stdin=AGENT_PASSWORD + "\n",
        )
        flask(env, "agents", "create", "bob", "bob@shop.example", "--password-stdin", stdin=AGENT_PASSWORD + "\n")
        a_month_at_the_desk(env["DATABASE_URL"])

    with serve(
        tmp_path_factory.mktemp("browser"), sink,
        accounts=[("jane", "jane@example.com"), ("kim", "kim@example.com"), TOUR_ACCOUNT],
        # The tours ask lea for a reset in each language and on each screen size: more than the
        # three mails an hour a customer gets.
        settings={"RESET_MAILS_PER_HOUR": "1000", "SIGN_IN_URL": SIGN_IN_URL},
        before_start=add_agents,
    ) as running:
        yield running


# --- helpers ----------------------------------------------------------------------------------


def choose_password(page: Page, link: str, password: str) -> None:
    """Open an emailed link and set a new password through the form, in English."""
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(password)
    page.get_by_label("New password, again", exact=True).fill(password)
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your password has been changed")


def sign_in_agent(page: Page, server: Server, username: str = "alice") -> None:
    """Sign an agent in to the console (any language: the fields are found by id)."""
    page.goto("/support/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(AGENT_PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{server.base}/support")


def tour(page: Page, server: Server, sink: SmtpSink, language: str, console: bool = True) -> Iterator[str]:
    """Walk through every page in `language`, yielding each page's name once it is showing.

    The walk does not depend on the wording (French may be partly missing): fields are found
    by id and each step waits for the next page's own structure. The reset asked for (for
    TOUR_ACCOUNT) is used, to reach the done page; nothing else signs in as that account.
    """
    base = server.base
    page.goto(f"/language/{language}?next=/reset-password")
    page.wait_for_url(f"{base}/reset-password")
    expect(page.locator("html")).to_have_attribute("lang", language)
    yield "reset-password"

    username, address = TOUR_ACCOUNT
    before = len(sink.messages)
    page.locator("#username").fill(username)
    page.locator("main form button[type=submit]").click()
    expect(page.locator("main form")).to_have_count(0)  # the answer: no form, just the news
    yield "reset-password-sent"

    page.goto(wait_for_link(sink, server, address, before))
    page.wait_for_url(f"{base}/reset-password/new")
    expect(page.locator("#new_password")).to_be_visible()
    yield "reset-password-new"

    page.locator("#new_password").fill(STRONG_PASSWORD)
    page.locator("#confirm_password").fill(OTHER_STRONG_PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page.locator("#confirm_password[aria-invalid=true]")).to_be_visible()
    yield "reset-password-new-error"

    # The done page is shown only to the browser that just changed the password: change it.
    page.locator("#new_password").fill(STRONG_PASSWORD)
    page.locator("#confirm_password").fill(STRONG_PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/reset-password/done")
    expect(page.locator("main a.button")).to_be_visible()
    yield "reset-password-done"

    response = page.goto("/reset-password/this-link-was-never-sent")
    assert response is not None and response.status == 400
    page.wait_for_url(f"{base}/reset-password/new")
    yield "reset-password-invalid-link"

    page.goto("/login-help")
    expect(page.locator('main a[href^="tel:"]')).to_be_visible()
    yield "login-help"

    if not console:
        return
    page.goto("/support/login")
    expect(page.locator("#password")).to_be_visible()
    yield "support-login"

    sign_in_agent(page, server)
    page.locator("#q").fill("jane")
    page.locator("form[role=search] button").click()
    page.wait_for_url(f"{base}/support?q=jane")
    expect(page.locator('main table a[href="/support/accounts/jane"]')).to_be_visible()
    yield "support-search"

    page.locator('main table a[href="/support/accounts/jane"]').click()
    page.wait_for_url(f"{base}/support/accounts/jane")
    yield "support-account"

    page.locator('main a[href="/support/accounts/jane/reset-link"]').click()
    page.wait_for_url(f"{base}/support/accounts/jane/reset-link")
    expect(page.locator("#ticket")).to_be_visible()
    yield "support-confirm"

    page.locator('footer a[href="/support/overview"]').click()
    page.wait_for_url(f"{base}/support/overview")
    expect(page.locator("main svg[role=img] rect.bar").first).to_be_visible()
    yield "support-overview"

    page.locator("footer form button[type=submit]").click()  # alice signs out; bob, no supervisor, signs in
    page.wait_for_url(f"{base}/support/login")
    sign_in_agent(page, server, "bob")
    expect(page.locator('footer a[href="/support/overview"]')).to_have_count(0)
    response = page.goto("/support/overview")
    assert response is not None and response.status == 403
    yield "support-supervisors-only"


# --- 1. reset by link -------------------------------------------------------------------------


def test_a_reset_by_link_in_the_browser(page: Page, server: Server, sink: SmtpSink) -> None:
    assert verify(server, "jane", STRONG_PASSWORD) == 200
    page.goto("/reset-password")
    expect(page.get_by_role("heading", level=1)).to_have_text("Reset Your Password")
    before = len(sink.messages)
    page.get_by_label("Username").fill("jane")
    page.get_by_role("button", name="Send the link").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    expect(page.locator("main")).to_contain_text("Check your spam folder")
    link = wait_for_link(sink, server, "jane@example.com", before)

    page.goto(link)
    page.wait_for_url(f"{server.base}/reset-password/new")
    token = link.rsplit("/", 1)[1]
    assert token not in page.url
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    expect(page.locator("main")).to_contain_text("jane")

    before = len(sink.messages)
    page.get_by_label("New password", exact=True).fill(OTHER_STRONG_PASSWORD)
    page.get_by_label("New password, again", exact=True).fill(OTHER_STRONG_PASSWORD)
    page.get_by_role("button", name="Save the new password").click()

    page.wait_for_url(f"{server.base}/reset-password/done")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your password has been changed")
    sign_in = page.get_by_role("link", name="Sign in")
    expect(sign_in).to_have_attribute("href", SIGN_IN_URL)

    assert verify(server, "jane", STRONG_PASSWORD) == 401
    assert verify(server, "jane", OTHER_STRONG_PASSWORD) == 200
    wait_for_subject(sink, "jane@example.com", "Your password was changed", before)


# --- 2. the help page -------------------------------------------------------------------------


def test_the_help_page_says_how_to_reach_customer_service(page: Page, server: Server) -> None:
    page.goto("/reset-password")
    page.get_by_role("link", name="Contact customer service").click()
    page.wait_for_url(f"{server.base}/login-help")
    expect(page.get_by_role("heading", level=1)).to_have_text("Still having trouble logging in?")

    hours = page.get_by_role("row", name=re.compile("^Hours"))
    expect(hours).to_contain_text("Monday to Friday, 9:00 AM to 6:00 PM")
    expect(hours).to_contain_text("Eastern Time")
    phone = page.locator('main a[href^="tel:"]')
    expect(phone).to_have_text("1-844-560-7790")
    expect(phone).to_have_attribute("href", "tel:+18445607790")
    email = page.get_by_role("row", name=re.compile("^Email")).locator('a[href^="mailto:"]')
    expect(email).to_have_text("service@canadianinsulin.com")
    expect(email).to_have_attribute("href", "mailto:service@canadianinsulin.com")
    expect(page.get_by_role("row", name=re.compile("^Fax"))).to_contain_text("1-866-951-0118")

    # Open or closed, as the API says (a page read at the very minute it opens or closes
    # could disagree; that minute is not worth a flaky test).
    open_now = call("GET", f"{server.base}/api/v1/contact")[1]["open_now"]
    wording = "Customer service is open now." if open_now else "We're closed now."
    expect(page.locator("main")).to_contain_text(wording)


# --- 3. a used link ---------------------------------------------------------------------------


def test_a_used_link_says_so_and_offers_a_new_one(page: Page, server: Server, sink: SmtpSink) -> None:
    link = request_link(server, sink, "kim", "kim@example.com")
    choose_password(page, link, OTHER_STRONG_PASSWORD)

    page.goto(link)
    page.wait_for_url(f"{server.base}/reset-password/new")
    expect(page.get_by_role("heading", level=1)).to_contain_text("already been used")
    expect(page.locator("#new_password")).to_have_count(0)
    screenshot(page, "reset-password-used-link.en")

    page.get_by_role("link", name="Send me a new link").click()
    page.wait_for_url(f"{server.base}/reset-password")
    expect(page.get_by_label("Username")).to_be_visible()


def test_an_expired_link_says_so_and_offers_a_new_one(page: Page, server: Server, sink: SmtpSink) -> None:
    """A real link, signed again as it would have been two hours ago (it lives one hour)."""
    import time_machine
    from itsdangerous import URLSafeTimedSerializer

    from service.resets.links import RESET_LINK_SALT

    link = request_link(server, sink, "kim", "kim@example.com")
    prefix, token = link.rsplit("/", 1)
    serializer = URLSafeTimedSerializer(server.secret_key, salt=RESET_LINK_SALT)
    payload = serializer.loads(token)
    with time_machine.travel(time.time() - 2 * 3600, tick=False):
        expired = serializer.dumps(payload)

    page.goto(f"{prefix}/{expired}")
    page.wait_for_url(f"{server.base}/reset-password/new")
    expect(page.get_by_role("heading", level=1)).to_contain_text("expired")
    expect(page.locator("#new_password")).to_have_count(0)
    screenshot(page, "reset-password-expired-link.en")
    page.get_by_role("link", name="Send me a new link").click()
    page.wait_for_url(f"{server.base}/reset-password")


# --- 4. the console's reset -------------------------------------------------------------------


def test_a_whole_call_in_the_console(page: Page, new_context: Callable[..., BrowserContext], server: Server, sink: SmtpSink) -> None:
    """Find the caller by a surname, verify them, change their email, send a reset, see it delivered."""
    status, _body = call(
        "POST", f"{server.base}/api/v1/accounts",
        {"username": "camille", "email": "camille@old.example.com", "full_name": "Camille López", "phone": "514 555 0123"},
        {"Authorization": f"Bearer {server.client_key}"},
    )
    assert status == 201
    page.goto("/support")
    page.wait_for_url(f"{server.base}/support/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.base}/support")

    # The search box has the focus: the agent types the surname as the caller spells it.
    page.keyboard.type("LOPEZ")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="camille", exact=True).click()
    page.wait_for_url(f"{server.base}/support/accounts/camille")
    expect(page.get_by_role("heading", level=1)).to_have_text("camille")

    # The caller no longer reads the old address: verified by a call back, the email changes.
    page.get_by_role("link", name="Change the email address").click()
    page.get_by_label("How did you verify the caller?").select_option("callback")
    page.get_by_label("New email address").fill("camille@new.example.org")
    before = len(sink.messages)
    page.get_by_role("button", name="Yes, change the email address").click()
    page.wait_for_url(f"{server.base}/support/accounts/camille")
    expect(page.get_by_role("status")).to_contain_text("Sent a confirmation link to c***@new.example.org.")

    # The customer follows the link from their new mailbox and presses the button.
    link = re.compile(re.escape(server.base) + r"/confirm-email/\S+")
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    found = None
    while found is None:
        for message in list(sink.messages[before:]):
            if message["To"] == "camille@new.example.org":
                found = link.search(SmtpSink.text_of(message))
        assert found is not None or time.monotonic() < deadline, "no confirmation link mailed"
        time.sleep(0.05)
    customer = new_context().new_page()
    customer.goto(found.group(0))
    customer.get_by_role("button", name="Confirm my email address").click()
    expect(customer.get_by_role("heading", level=1)).to_have_text("Email address confirmed")

    # Back in the console: the new address is on file; a reset goes there.
    page.reload()
    expect(page.locator("table.facts")).to_contain_text("camille@new.example.org")
    page.get_by_role("link", name="Send a reset link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Send a reset link?")
    page.get_by_label("How did you verify the caller?").select_option("order_number")
    before = len(sink.messages)
    page.get_by_role("button", name="Yes, send a reset link").click()
    page.wait_for_url(f"{server.base}/support/accounts/camille")
    expect(page.get_by_role("status")).to_have_text("Sent a reset link to c***@new.example.org.")
    wait_for_link(sink, server, "camille@new.example.org", before)

    # "Did it leave?" The recent mail says sent, and the trail says who verified how.
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while True:
        page.reload()
        first_row = page.locator("table.mail tr").nth(1)
        if "Reset your password" in first_row.inner_text() and first_row.locator(".state-sent").count():
            break
        assert time.monotonic() < deadline, first_row.inner_text()
        time.sleep(0.2)
    expect(page.locator("table.trail")).to_contain_text("verified: Confirmed a recent order number")
    expect(page.locator("table.trail")).to_contain_text("Email address changed")


# --- 5. keyboard only -------------------------------------------------------------------------

FOCUSED = """() => {
    const e = document.activeElement, box = e.getBoundingClientRect(), style = getComputedStyle(e);
    return {
        tag: e.tagName.toLowerCase(), id: e.id, className: e.className, text: e.innerText.trim(),
        href: e.getAttribute("href"), type: e.getAttribute("type"),
        onScreen: box.width > 0 && box.height > 0 && box.left >= 0 && box.top >= 0 && box.right <= innerWidth,
        outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
    };
}"""


def test_the_reset_form_works_from_the_keyboard_alone(page: Page, server: Server) -> None:
    page.goto("/reset-password")
    stops = []
    for _ in range(4):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(FOCUSED))
    skip, language, username, submit = stops
    assert (skip["tag"], skip["className"], skip["text"], skip["href"]) == ("a", "skip", "Skip to content", "#main")
    assert language["tag"] == "a" and language["text"] == "Français" and language["href"].startswith("/language/fr")
    assert (username["tag"], username["id"]) == ("input", "username")
    assert (submit["tag"], submit["type"], submit["text"]) == ("button", "submit", "Send the link")
    for stop in stops:
        assert stop["onScreen"], f"focused but off screen: {stop}"
        assert stop["outline"], f"focused without a visible outline: {stop}"

    # The skip link skips the header: the next Tab lands in the form.
    page.goto("/reset-password")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.base}/reset-password#main")
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED)["id"] == "username"

    # Enter in the field sends the form (a name nobody has: the same answer, and no mail).
    page.keyboard.type("nobody-at-the-keyboard")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")


# --- 6. a 320 px screen -----------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_customer_page_scrolls_sideways_at_320_px(
    new_context: Callable[..., BrowserContext], server: Server, sink: SmtpSink, language: str
) -> None:
    page = new_context(viewport={"width": 320, "height": 640}).new_page()
    too_wide = {}
    seen = []
    for name in tour(page, server, sink, language, console=False):
        seen.append(name)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 320:
            too_wide[name] = width
        screenshot(page, f"{name}.{language}.320px")
    assert seen == list(CUSTOMER_PAGES)
    assert not too_wide, f"pages wider than 320 px ({language}): {too_wide}"


# --- 7. accessibility -------------------------------------------------------------------------


@needs_axe
@pytest.mark.parametrize("language", LANGUAGES)
def test_no_page_has_serious_or_critical_axe_violations(
    new_context: Callable[..., BrowserContext], server: Server, sink: SmtpSink, language: str
) -> None:
    # The pages' Content-Security-Policy allows only this site's own script files, so axe-core,
    # injected as a script, could not run: bypass_csp=True lets it (and only this context)
    # ignore the policy. The other tests keep the policy in force.
    page = new_context(bypass_csp=True).new_page()
    blocking: dict[str, list[dict[str, Any]]] = {}
    seen = []
    for name in tour(page, server, sink, language):
        seen.append(name)
        if serious := blocking_axe_findings(page, name, language):
            blocking[name] = serious
    assert seen == list(CUSTOMER_PAGES + CONSOLE_PAGES)
    assert not blocking, f"serious or critical axe-core violations ({language}): {blocking}"


# --- 8. screenshots ---------------------------------------------------------------------------

PAGE_STYLES = """() => ({
    background: getComputedStyle(document.body).backgroundColor,
    main: getComputedStyle(document.querySelector("main")).backgroundColor,
    accent: getComputedStyle(document.documentElement).getPropertyValue("--accent").trim(),
    sheets: document.styleSheets.length,
})"""


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_is_styled_under_its_own_policy_and_photographed(
    page: Page, server: Server, sink: SmtpSink, language: str
) -> None:
    refused = csp_refusals(page)
    seen = []
    for name in tour(page, server, sink, language):
        seen.append(name)
        # site.css and brand.css both loaded (the CSP allows this site's own styles).
        page.wait_for_load_state("load")
        styles = page.evaluate(PAGE_STYLES)
        assert styles == {"background": "rgb(246, 247, 249)", "main": "rgb(255, 255, 255)", "accent": "#0b5394", "sheets": 2}, name
        screenshot(page, f"{name}.{language}")
    assert seen == list(CUSTOMER_PAGES + CONSOLE_PAGES)
    assert not refused, f"the pages broke their own Content-Security-Policy: {refused}"
    if language == "en":
        copy_doc_screenshots(DOC_PAGES)
