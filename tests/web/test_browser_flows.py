"""In a real browser, the flows beside the reset link: the code from the mail, a forgotten
username, "this wasn't me", the first of several mails, the show-password button (and the
page without JavaScript), the help page while closed, the done page without SIGN_IN_URL, the
favicon; axe-core on each new page in English and French, and their screenshots.

One gunicorn server for the module, with mail going to a real SMTP sink on loopback (see
tests/web/browsing.py). Its customer service is closed for the whole run (see `closed_hours`),
and it has no SIGN_IN_URL. Each test makes its own account over the API, so the hourly cap on
reset mails (left at its default, 3) is the real one.

    UPDATE_DOC_SCREENSHOTS=1 .venv/bin/python -m pytest tests/web/test_browser_flows.py
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.dates import get_day_names

from service.contact.hours import DAYS, opening_state, parse_hours
from service.platform.clock import utcnow
from service.resets.codes import CODE_ALPHABET, CODE_LENGTH
from tests.conftest import OTHER_STRONG_PASSWORD, SmtpSink
from tests.processes import call
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
    screenshot,
    serve,
    verify,
    wait_for_link,
    wait_for_mail,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOP_ZONE = ZoneInfo("America/New_York")
USUAL_HOURS = "Mon-Fri 09:00-18:00"
HALF = CODE_LENGTH // 2
CODE = rf"\b[{CODE_ALPHABET}]{{{HALF}}}-[{CODE_ALPHABET}]{{{CODE_LENGTH - HALF}}}\b"
ERROR_RED = "rgb(176, 0, 32)"  # --error in site.css

# The new pages, by the name their screenshots get; the English screenshot of each one in
# DOC_PAGES goes to docs/screenshots/ with UPDATE_DOC_SCREENSHOTS=1.
NEW_PAGES = (
    "reset-password-code", "forgot-username", "forgot-username-sent", "reset-password-new-toggle",
    "reset-password-done-no-sign-in-url", "report", "report-done", "login-help-closed",
)
DOC_PAGES = tuple(name for name in NEW_PAGES if name != "forgot-username-sent")


def closed_hours(now: datetime) -> str:
    """CONTACT_HOURS under which customer service is closed now and for the next hour: the
    usual weekdays when they are closed (nights, weekends), else only tomorrow's weekday."""
    if not any(opening_state(parse_hours(USUAL_HOURS), SHOP_ZONE, now + timedelta(minutes=m)).open_now for m in (0, 60)):
        return USUAL_HOURS
    tomorrow = (now.astimezone(SHOP_ZONE) + timedelta(days=1)).weekday()
    return f"{DAYS[tomorrow]} 09:00-18:00"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sink: SmtpSink) -> Iterator[Server]:
    with serve(
        tmp_path_factory.mktemp("browser-flows"), sink, accounts=[],
        settings={"CONTACT_HOURS": closed_hours(utcnow()), "CONTACT_TIMEZONE": SHOP_ZONE.key},
    ) as running:
        yield running


# --- helpers ----------------------------------------------------------------------------------


def new_account(server: Server, name: str, address: str | None = None, *, exact: bool = False) -> tuple[str, str]:
    """An account made by the website over the API (no password yet); its username (`name`
    and a random suffix, unless `exact`) and email."""
    username = name if exact else f"{name}-{secrets.token_hex(3)}"
    address = address or f"{username}@example.com"
    status, body = call(
        "POST", f"{server.base}/api/v1/accounts", {"username": username, "email": address},
        {"Authorization": f"Bearer {server.client_key}"},
    )
    assert status == 201, body
    return username, address


def ask_in_the_box(page: Page, username: str) -> None:
    """Type a username into Reset Your Password and send it, in English."""
    page.goto("/reset-password")
    page.get_by_label("Username").fill(username)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")


def ask_over_the_api(server: Server, username: str) -> None:
    assert call("POST", f"{server.base}/api/v1/password-resets", {"username": username})[0] == 202


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in\n{text}"
    return match.group(0)


def save_password(page: Page, password: str) -> None:
    """On the new-password form: type the password twice and save it, in English."""
    page.get_by_label("New password", exact=True).fill(password)
    page.get_by_label("New password, again", exact=True).fill(password)
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your password has been changed")


def day_in(language: str, moment: datetime) -> str:
    """How the pages name the day of `moment` (given with its zone's offset): today, tomorrow,
    or the day's name."""
    days_ahead = (moment.date() - datetime.now(moment.tzinfo).date()).days
    if days_ahead in (0, 1):
        return {"en": ("today", "tomorrow"), "fr": ("aujourd’hui", "demain")}[language][days_ahead]
    return str(get_day_names("wide", locale=language)[moment.weekday()])


# --- 1. the code from the mail ----------------------------------------------------------------


def test_a_reset_by_the_code_typed_on_another_device(
    page: Page, new_context: Callable[..., BrowserContext], server: Server, sink: SmtpSink
) -> None:
    username, address = new_account(server, "noor")
    before = len(sink.messages)
    ask_in_the_box(page, username)
    text = SmtpSink.text_of(wait_for_mail(sink, address, before, CODE))
    code = found(CODE, text)
    link = found(re.escape(server.base) + r"/reset-password/(?!code\b)\S+", text)

    # The mail is read on a phone; the code is typed on the computer, in a profile of its own,
    # as people type: in small letters, with a space for the dash.
    computer = new_context().new_page()
    computer.goto("/reset-password")
    computer.get_by_label("Username").fill(username)
    computer.get_by_role("button", name="Send the link").click()
    computer.get_by_role("link", name="Reading the email on another device? Enter its code here").click()
    computer.wait_for_url(f"{server.base}/reset-password/code")
    # That second request mailed a second code; the first one still works (asking again
    # strands nobody).
    expect(computer.get_by_role("heading", level=1)).to_have_text("Enter the code from your email")
    computer.get_by_label("Username").fill(username)
    computer.get_by_label("Code from the email").fill(code.lower().replace("-", " "))
    computer.get_by_role("button", name="Continue").click()
    computer.wait_for_url(f"{server.base}/reset-password/new")
    expect(computer.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    expect(computer.locator("main")).to_contain_text(username)
    save_password(computer, OTHER_STRONG_PASSWORD)
    assert verify(server, username, OTHER_STRONG_PASSWORD) == 200

    # One reset, two ways in: the code used it, so the link from the same mail is dead.
    page.goto(link)
    page.wait_for_url(f"{server.base}/reset-password/new")
    expect(page.locator("#new_password")).to_have_count(0)


def test_a_wrong_code_says_so_on_the_field(page: Page, server: Server) -> None:
    username, _address = new_account(server, "wren")
    page.goto("/reset-password/code")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Code from the email").fill("ABCDE-FGHJK")
    page.get_by_role("button", name="Continue").click()
    code_field = page.get_by_label("Code from the email")
    expect(code_field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#code-error")).to_be_visible()
    assert page.url == f"{server.base}/reset-password/code"


# --- 2. a forgotten username ------------------------------------------------------------------


def test_a_forgotten_username_comes_by_mail_and_fills_in_the_reset_box(page: Page, server: Server, sink: SmtpSink) -> None:
    """A family shares one address: the mail lists each username, each link fills in the box."""
    ana, address = new_account(server, "fam-ana")
    ben, _same = new_account(server, "fam-ben", address)
    page.goto("/reset-password")
    page.get_by_role("link", name="Forgot your username?").click()
    page.wait_for_url(f"{server.base}/forgot-username")
    expect(page.get_by_role("heading", level=1)).to_have_text("Forgot your username?")
    before = len(sink.messages)
    page.get_by_label("Email address").fill(address.upper())  # however it is spelt
    page.get_by_role("button", name="Send my usernames").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")

    text = SmtpSink.text_of(wait_for_mail(sink, address, before, re.escape(ben)))
    assert ana in text and ben in text
    link = found(re.escape(f"{server.base}/reset-password?username={ben}"), text)

    page.goto(link)
    expect(page.get_by_label("Username")).to_have_value(ben)
    assert len(sink.messages) == before + 1  # opening the link sent nothing
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    wait_for_link(sink, server, address, before + 1)


# --- 3. "this wasn't me" ----------------------------------------------------------------------


def test_this_wasnt_me_from_a_reset_mail_stops_the_reset_and_says_how_to_call(
    page: Page, server: Server, sink: SmtpSink
) -> None:
    username, address = new_account(server, "ravi")
    before = len(sink.messages)
    ask_over_the_api(server, username)
    text = SmtpSink.text_of(wait_for_mail(sink, address, before, "/report/"))
    report = found(re.escape(server.base) + r"/report/\S+", text)
    link = found(re.escape(server.base) + r"/reset-password/(?!code\b)\S+", text)

    page.goto(report)
    expect(page.get_by_role("heading", level=1)).to_have_text("This wasn't me")
    page.get_by_role("button", name="Stop the reset").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you for telling us")
    main = page.locator("main")
    expect(main).to_contain_text("Every pending password reset of your account has been stopped.")
    phone = page.locator('main a[href^="tel:"]')
    expect(phone).to_have_text("1-844-560-7790")
    expect(phone).to_have_attribute("href", "tel:+18445607790")
    contact = call("GET", f"{server.base}/api/v1/contact")[1]
    for line in contact["hours_text"]:
        expect(main).to_contain_text(line)
    next_open = datetime.fromisoformat(contact["next_open"])
    expect(main).to_contain_text(
        f"Customer service is closed now and opens again {day_in('en', next_open)} at 9:00 AM Eastern Time."
    )

    # The reset it stopped is dead.
    page.goto(link)
    page.wait_for_url(f"{server.base}/reset-password/new")
    expect(page.locator("#new_password")).to_have_count(0)


# --- 4. the first of several mails ------------------------------------------------------------


def test_asking_three_times_then_using_the_first_mail_that_arrives_works(page: Page, server: Server, sink: SmtpSink) -> None:
    username, address = new_account(server, "sam")
    link = re.escape(server.base) + r"/reset-password/(?!code\b)\S+"
    before = len(sink.messages)
    for _ in range(3):
        ask_in_the_box(page, username)
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while len(mails := [m for m in list(sink.messages[before:]) if m["To"] == address]) < 3:
        assert time.monotonic() < deadline, f"{len(mails)} of 3 reset mails arrived"
        time.sleep(0.05)
    links = [found(link, SmtpSink.text_of(mail)) for mail in mails]
    assert len(set(links)) == 3

    page.goto(links[0])
    page.wait_for_url(f"{server.base}/reset-password/new")
    save_password(page, OTHER_STRONG_PASSWORD)
    assert verify(server, username, OTHER_STRONG_PASSWORD) == 200
    expect(page.locator("main")).to_contain_text("You can now sign in on the Canadian Insulin website with your new password.")
    expect(page.get_by_role("link", name="Sign in")).to_have_count(0)


# --- 5. the show-password button --------------------------------------------------------------

FOCUSED_CONTROLS = "() => document.activeElement.getAttribute('aria-controls')"
# Records the fields' types when the form is sent, and holds that first sending back.
HOLD_FIRST_SUBMIT = """() => {
    const form = document.querySelector("main form");
    form.addEventListener("submit", event => {
        if (window.typesAtSubmit) return;
        window.typesAtSubmit = [...form.querySelectorAll("#new_password, #confirm_password")].map(f => f.type);
        event.preventDefault();
    });
}"""


def test_the_show_password_button_shows_and_hides_from_mouse_and_keyboard(page: Page, server: Server, sink: SmtpSink) -> None:
    refused = csp_refusals(page)
    username, address = new_account(server, "tess")
    ask_over_the_api(server, username)
    page.goto(wait_for_link(sink, server, address, 0))
    page.wait_for_url(f"{server.base}/reset-password/new")

    field = page.locator("#new_password")
    toggle = page.locator('button[aria-controls="new_password"]')
    expect(toggle).to_have_text("Show password")
    expect(toggle).to_have_attribute("type", "button")
    expect(field).to_have_attribute("type", "password")
    field.fill(OTHER_STRONG_PASSWORD)

    toggle.click()
    expect(field).to_have_attribute("type", "text")
    expect(toggle).to_have_text("Hide password")
    expect(page.locator("p[role=status]")).to_have_text("Your password is showing.")
    assert field.input_value() == OTHER_STRONG_PASSWORD
    toggle.click()
    expect(field).to_have_attribute("type", "password")
    expect(toggle).to_have_text("Show password")
    expect(page.locator("p[role=status]")).to_have_text("Your password is hidden.")

    # From the keyboard: Tab leaves the field for its button; Space and Enter work it, and
    # Enter on it does not send the form.
    field.focus()
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED_CONTROLS) == "new_password"
    page.keyboard.press("Space")
    expect(field).to_have_attribute("type", "text")
    page.keyboard.press("Enter")
    expect(field).to_have_attribute("type", "password")
    assert page.url == f"{server.base}/reset-password/new"
    expect(page.locator('button[aria-controls="confirm_password"]')).to_have_text("Show password")

    # Sent while shown: both fields are password fields again when the form goes.
    page.locator("#confirm_password").fill(OTHER_STRONG_PASSWORD)
    toggle.click()
    page.locator('button[aria-controls="confirm_password"]').click()
    page.evaluate(HOLD_FIRST_SUBMIT)
    page.get_by_role("button", name="Save the new password").click()
    page.wait_for_function("() => window.typesAtSubmit !== undefined")
    assert page.evaluate("() => window.typesAtSubmit") == ["password", "password"]
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your password has been changed")
    assert verify(server, username, OTHER_STRONG_PASSWORD) == 200

    # The console's sign-in has one too, in French on a French page.
    page.goto("/language/fr?next=/support/login")
    expect(page.locator('button[aria-controls="password"]')).to_have_text("Afficher le mot de passe")
    assert not refused, f"the pages broke their own Content-Security-Policy: {refused}"


def test_without_javascript_no_toggle_shows_and_the_form_still_works(
    new_context: Callable[..., BrowserContext], server: Server, sink: SmtpSink
) -> None:
    page = new_context(java_script_enabled=False).new_page()
    username, address = new_account(server, "uma")
    ask_over_the_api(server, username)
    page.goto(wait_for_link(sink, server, address, 0))
    page.wait_for_url(f"{server.base}/reset-password/new")
    expect(page.locator("#new_password")).to_be_visible()
    expect(page.locator("main button")).to_have_count(1)  # only "Save the new password"
    expect(page.get_by_text("Show password")).to_have_count(0)
    save_password(page, OTHER_STRONG_PASSWORD)
    assert verify(server, username, OTHER_STRONG_PASSWORD) == 200


# --- 6. the help page while closed, the favicon -----------------------------------------------


@pytest.mark.parametrize(
    ("language", "closed", "opens", "meanwhile", "username_link"),
    [
        ("en", "We're closed now.", "We open again {day} at 9:00 AM Eastern Time.", "Meanwhile you can:",
         "Get your username by email"),
        ("fr", "Nous sommes fermés en ce moment.", "Nous rouvrons {day} à 09:00, heure de l’Est.",
         "En attendant, vous pouvez :", "Recevoir votre nom d’utilisateur par courriel"),
    ],
)
def test_the_closed_help_page_says_calmly_when_it_opens_and_what_to_do_meanwhile(
    page: Page, server: Server, language: str, closed: str, opens: str, meanwhile: str, username_link: str
) -> None:
    contact = call("GET", f"{server.base}/api/v1/contact")[1]
    assert not contact["open_now"]
    next_open = datetime.fromisoformat(contact["next_open"])
    page.goto(f"/language/{language}?next=/login-help")
    page.wait_for_url(f"{server.base}/login-help")

    news = page.get_by_text(closed)
    expect(news).to_have_text(f"{closed} {opens.format(day=day_in(language, next_open))}")
    expect(news.locator("time")).to_have_attribute("datetime", contact["next_open"])
    expect(page.locator("main")).not_to_contain_text("America/New_York")
    # Calm: the page's ordinary weight and colour, nothing of an error's bold red.
    style = news.evaluate("e => ({colour: getComputedStyle(e).color, weight: getComputedStyle(e).fontWeight})")
    assert style["colour"] != ERROR_RED and style["weight"] == "400", style

    expect(page.get_by_text(meanwhile)).to_be_visible()
    items = page.get_by_role("list", name=meanwhile).get_by_role("listitem")
    expect(items).to_have_count(3)
    expect(items.nth(2).get_by_role("link")).to_have_attribute("href", f"mailto:{contact['email']}")
    items.nth(1).get_by_role("link", name=username_link).click()
    page.wait_for_url(f"{server.base}/forgot-username")
    page.go_back()
    items.nth(0).get_by_role("link").click()
    page.wait_for_url(f"{server.base}/reset-password")


def test_the_favicon_loads_and_favicon_ico_leads_to_it(page: Page) -> None:
    refused = csp_refusals(page)
    page.goto("/reset-password")
    icon = page.locator('link[rel="icon"]')
    expect(icon).to_have_attribute("type", "image/svg+xml")
    for address in (icon.get_attribute("href"), "/favicon.ico"):
        answer = page.request.get(str(address))
        assert answer.ok and answer.headers["content-type"].startswith("image/svg+xml"), address
    assert not refused


# --- 7. every new page: axe-core, 320 px, screenshots -----------------------------------------


def tour(page: Page, server: Server, sink: SmtpSink, language: str, username: str) -> Iterator[str]:
    """Walk through every new page in `language` as `username` (a new account, so the hourly
    cap on reset mails never gets in the way), yielding each page's name once it shows.

    Fields are found by id and each step waits for the next page's own structure, whatever
    the wording.
    """
    base = server.base
    username, address = new_account(server, username, exact=True)
    page.goto(f"/language/{language}?next=/reset-password/code")
    page.wait_for_url(f"{base}/reset-password/code")
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.locator("#code")).to_be_visible()
    yield "reset-password-code"

    page.goto("/forgot-username")
    expect(page.locator("#email")).to_be_visible()
    yield "forgot-username"

    page.locator("#email").fill(address)
    page.locator("main form button[type=submit]").click()
    expect(page.locator("main form")).to_have_count(0)
    yield "forgot-username-sent"

    before = len(sink.messages)
    ask_over_the_api(server, username)
    text = SmtpSink.text_of(wait_for_mail(sink, address, before, "/report/"))
    page.goto(found(re.escape(base) + r"/reset-password/(?!code\b)\S+", text))
    page.wait_for_url(f"{base}/reset-password/new")
    page.locator("#new_password").fill("correct horse battery staple")
    page.locator('button[aria-controls="new_password"]').click()
    expect(page.locator("#new_password")).to_have_attribute("type", "text")
    yield "reset-password-new-toggle"

    # The done page is shown only to the browser that just changed the password: change it.
    page.locator("#confirm_password").fill("correct horse battery staple")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{base}/reset-password/done")
    expect(page.locator("main h1")).to_be_visible()
    expect(page.locator("main a.button")).to_have_count(0)
    yield "reset-password-done-no-sign-in-url"

    # The reset mail's report link still works once (its reset is used, not reported).
    page.goto(found(re.escape(base) + r"/report/\S+", text))
    expect(page.locator("main form button[type=submit]")).to_be_visible()
    yield "report"

    page.locator("main form button[type=submit]").click()
    expect(page.locator('main a[href^="tel:"]')).to_be_visible()
    yield "report-done"

    page.goto("/login-help")
    expect(page.locator("main time")).to_be_visible()
    yield "login-help-closed"


@needs_axe
@pytest.mark.parametrize("language", LANGUAGES)
def test_no_new_page_has_serious_or_critical_axe_violations(
    new_context: Callable[..., BrowserContext], server: Server, sink: SmtpSink, language: str
) -> None:
    # axe-core is injected as a script, which the pages' policy (this site's files only) would
    # refuse: this context alone bypasses the policy. The pages' own script still runs.
    page = new_context(bypass_csp=True).new_page()
    blocking: dict[str, list[dict[str, Any]]] = {}
    seen = []
    for name in tour(page, server, sink, language, f"axe-{language}"):
        seen.append(name)
        if serious := blocking_axe_findings(page, name, language):
            blocking[name] = serious
    assert seen == list(NEW_PAGES)
    assert not blocking, f"serious or critical axe-core violations ({language}): {blocking}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_new_page_scrolls_sideways_at_320_px(
    new_context: Callable[..., BrowserContext], server: Server, sink: SmtpSink, language: str
) -> None:
    page = new_context(viewport={"width": 320, "height": 640}).new_page()
    too_wide = {}
    for name in tour(page, server, sink, language, f"narrow-{language}"):
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 320:
            too_wide[name] = width
        screenshot(page, f"{name}.{language}.320px")
    assert not too_wide, f"pages wider than 320 px ({language}): {too_wide}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_new_page_keeps_its_own_policy_and_is_photographed(
    page: Page, server: Server, sink: SmtpSink, language: str
) -> None:
    refused = csp_refusals(page)
    seen = []
    for name in tour(page, server, sink, language, {"en": "jane.doe", "fr": "jeanne.roy"}[language]):
        seen.append(name)
        page.wait_for_load_state("load")
        screenshot(page, f"{name}.{language}")
    assert seen == list(NEW_PAGES)
    assert not refused, f"the pages broke their own Content-Security-Policy: {refused}"
    if language == "en":
        copy_doc_screenshots(DOC_PAGES)
