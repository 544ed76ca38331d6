"""The pages: Reset Your Password, the new-password form behind a link, and login help."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from service.models import Account, ResetRequest
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.web.pages import DONE_PAGE_MINUTES, SESSION_DONE_KEY, SESSION_TOKEN_KEY
from tests.conftest import (
    OTHER_STRONG_PASSWORD,
    STRONG_PASSWORD,
    SmtpSink,
    run_dispatcher,
    smtp_settings,
)
from tests.formtools import csrf_token_in as csrf_token
from tests.formtools import post_form

# Not the test client's host, so links built from the request could not pass for it. Plain http:
# over https every form POST is refused, see test_a_form_posted_over_https_without_a_referer_is_accepted.
PUBLIC_BASE_URL = "http://account.example.com"
CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*>')
WEDNESDAY_3PM_UTC = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10:00 in New York
SATURDAY_3PM_UTC = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
SIGN_IN_URL = "https://shop.example.com/login"
FRENCH = {"Accept-Language": "fr-CA,fr;q=0.9"}


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, **getattr(request, "param", {})}


# --- helpers ----------------------------------------------------------------------------------


def page(response: TestResponse) -> str:
    assert response.mimetype == "text/html", response.mimetype
    return response.get_data(as_text=True)


def reset_request_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ResetRequest))


def emailed_token(app: Flask, client: FlaskClient, smtp: SmtpSink) -> str:
    assert post_form(client, "/reset-password", {"username": "jane"}).status_code == 200
    run_dispatcher(app)
    match = re.search(re.escape(PUBLIC_BASE_URL) + r"/reset-password/(\S+)", SmtpSink.text_of(smtp.messages[-1]))
    assert match
    return match.group(1)


def open_link(client: FlaskClient, token: str) -> TestResponse:
    """Open an emailed link and follow its redirect to the new-password form."""
    opened = client.get(f"/reset-password/{token}")
    assert opened.status_code == 302
    return client.get(opened.headers["Location"])


def element_with_id(html: str, element_id: str) -> str:
    match = re.search(r'<(?:input|p)\b[^>]*\bid="' + re.escape(element_id) + r'"[^>]*>', html)
    assert match, f"no element {element_id!r} in\n{html}"
    return match.group(0)


def verify(client: FlaskClient, key: dict[str, str], password: str) -> int:
    return client.post("/api/v1/auth/verify", json={"username": "jane", "password": password}, headers=key).status_code


# --- Reset Your Password ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app_settings", "wording", "other_wording"),
    [
        ({"RESET_METHOD": "link"}, "we will send a link", "send a new password"),
        ({"RESET_METHOD": "temporary_password"}, "we will send a new password", "send a link"),
    ],
    indirect=["app_settings"],
    ids=["link", "temporary_password"],
)
def test_the_reset_page_says_what_will_be_sent(client: FlaskClient, wording: str, other_wording: str) -> None:
    response = client.get("/reset-password")
    assert response.status_code == 200
    html = page(response)
    assert "Reset Your Password" in html
    assert wording in html
    assert other_wording not in html
    assert '<label for="username">Username</label>' in html
    assert 'autocomplete="username"' in element_with_id(html, "username")
    assert CSRF_INPUT.search(html)


def test_posting_any_username_shows_the_same_check_your_email_page(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account()
    existing = post_form(client, "/reset-password", {"username": "jane"})
    missing = post_form(client, "/reset-password", {"username": "nobody-by-this-name"})
    assert existing.status_code == missing.status_code == 200
    existing_html, missing_html = page(existing), page(missing)
    assert "Check your email" in existing_html
    assert "spam folder" in existing_html
    assert CSRF_INPUT.sub("", existing_html) == CSRF_INPUT.sub("", missing_html)
    assert reset_request_count(app) == 2


def test_a_post_without_its_csrf_token_is_refused_with_a_friendly_page(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account()
    client.get("/reset-password")
    response = client.post("/reset-password", data={"username": "jane"})
    assert response.status_code == 400
    html = page(response)
    assert "This form has expired" in html
    assert "reload the page" in html
    assert "Traceback" not in html
    assert reset_request_count(app) == 0


@pytest.mark.parametrize(
    "app_settings", [{"PUBLIC_BASE_URL": "https://account.example.com"}], indirect=True, ids=["https"]
)
def test_a_form_posted_over_https_without_a_referer_is_accepted(app: Flask) -> None:
    client = app.test_client()
    form = client.get("/reset-password", base_url="https://localhost")
    assert form.headers["Referrer-Policy"] == "no-referrer"  # so a browser sends no Referer back
    response = client.post(
        "/reset-password",
        base_url="https://localhost",
        data={"csrf_token": csrf_token(page(form)), "username": "jane"},
    )
    assert response.status_code == 200, page(response)
    assert "Check your email" in page(response)


def test_a_post_with_a_wrong_csrf_token_is_refused(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account()
    client.get("/reset-password")
    response = client.post("/reset-password", data={"username": "jane", "csrf_token": "forged"})
    assert response.status_code == 400
    assert "This form has expired" in page(response)
    assert reset_request_count(app) == 0


def test_an_empty_username_is_shown_as_an_error_on_the_field(app: Flask, client: FlaskClient) -> None:
    response = post_form(client, "/reset-password", {"username": ""})
    assert response.status_code == 400
    html = page(response)
    assert 'aria-describedby="username-error"' in element_with_id(html, "username")
    assert "Enter your username." in element_with_id(html, "username-error") + html
    assert reset_request_count(app) == 0


# --- the link and the new-password form -------------------------------------------------------


def test_opening_a_link_moves_the_token_into_the_session_and_out_of_the_address(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    token = emailed_token(app, client, smtp)
    opened = client.get(f"/reset-password/{token}")
    assert opened.status_code == 302
    location = opened.headers["Location"]
    assert location.endswith("/reset-password/new")
    assert token not in location
    with client.session_transaction() as session:
        assert session[SESSION_TOKEN_KEY] == token


def test_the_new_password_form_shows_the_rules_and_two_new_password_fields(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    response = open_link(client, emailed_token(app, client, smtp))
    assert response.status_code == 200
    html = page(response)
    assert "Choose a new password" in html
    assert f"At least {app.config['PASSWORD_MIN_LENGTH']} characters" in html
    assert "not your username or email address" in html
    for field in ("new_password", "confirm_password"):
        tag = element_with_id(html, field)
        assert 'type="password"' in tag
        assert 'autocomplete="new-password"' in tag
        assert f'<label for="{field}">' in html
    assert CSRF_INPUT.search(html)


def test_the_new_password_form_names_its_account_for_password_managers(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    """Password managers file a new password under the username in the same form: a hidden
    field holds it, out of sight, out of the tab order and of assistive technology."""
    make_account()
    html = page(open_link(client, emailed_token(app, client, smtp)))
    form = html[html.index("<form"):html.index("</form>")]
    fields = re.findall(r'<input\b[^>]*autocomplete="username"[^>]*>', form)
    assert len(fields) == 1, form
    assert 'type="text"' in fields[0] and 'value="jane"' in fields[0]
    assert re.search(r"\shidden(?:\s|>|=)", fields[0]), fields[0]
    assert form.index('autocomplete="username"') < form.index('autocomplete="new-password"')


def test_mismatched_passwords_are_refused_with_the_error_tied_to_the_field(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    form = open_link(client, emailed_token(app, client, smtp))
    response = client.post(
        "/reset-password/new",
        data={
            "csrf_token": csrf_token(page(form)),
            "new_password": OTHER_STRONG_PASSWORD,
            "confirm_password": OTHER_STRONG_PASSWORD + " typo",
        },
    )
    assert response.status_code == 400
    html = page(response)
    field = element_with_id(html, "confirm_password")
    assert 'aria-describedby="confirm_password-error"' in field
    assert 'aria-invalid="true"' in field
    error = re.search(r'<p class="error" id="confirm_password-error">([^<]*)</p>', html)
    assert error and "not the same" in error.group(1)
    assert OTHER_STRONG_PASSWORD not in html  # passwords are never echoed back
    assert verify(client, client_key, STRONG_PASSWORD) == 200


def test_a_weak_password_is_refused_in_the_policys_words_and_the_link_still_works(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    form = open_link(client, emailed_token(app, client, smtp))
    response = client.post(
        "/reset-password/new",
        data={"csrf_token": csrf_token(page(form)), "new_password": "short", "confirm_password": "short"},
    )
    assert response.status_code == 400
    html = page(response)
    field = element_with_id(html, "new_password")
    assert "new_password-error" in re.search(r'aria-describedby="([^"]*)"', field).group(1)
    error = re.search(r'<p class="error" id="new_password-error">([^<]*)</p>', html)
    assert error and f"Use at least {app.config['PASSWORD_MIN_LENGTH']} characters" in error.group(1)

    retry = client.post(
        "/reset-password/new",
        data={
            "csrf_token": csrf_token(html),
            "new_password": OTHER_STRONG_PASSWORD,
            "confirm_password": OTHER_STRONG_PASSWORD,
        },
    )
    assert retry.status_code == 302
    assert verify(client, client_key, OTHER_STRONG_PASSWORD) == 200


@pytest.mark.parametrize("app_settings", [{"SIGN_IN_URL": SIGN_IN_URL}], indirect=True, ids=["SIGN_IN_URL"])
def test_setting_the_new_password_leads_to_the_done_page_with_a_sign_in_link(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    form = open_link(client, emailed_token(app, client, smtp))
    response = client.post(
        "/reset-password/new",
        data={
            "csrf_token": csrf_token(page(form)),
            "new_password": OTHER_STRONG_PASSWORD,
            "confirm_password": OTHER_STRONG_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/reset-password/done")
    with client.session_transaction() as session:
        assert SESSION_TOKEN_KEY not in session
    done = client.get(response.headers["Location"])
    assert done.status_code == 200
    html = page(done)
    assert "Your password has been changed" in html
    assert f'<a class="button" href="{SIGN_IN_URL}">Sign in</a>' in html
    assert verify(client, client_key, OTHER_STRONG_PASSWORD) == 200
    assert verify(client, client_key, STRONG_PASSWORD) == 401


def just_changed(client: FlaskClient) -> None:
    """The browser's session as a successful change leaves it: the done page is its to see."""
    with client.session_transaction() as session:
        session[SESSION_DONE_KEY] = int(utcnow().timestamp())


def test_the_done_page_is_only_for_the_browser_that_just_changed_the_password(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    # Anyone else (a link shared, a bookmark, a guess) is sent to the reset box.
    stranger = client.get("/reset-password/done")
    assert stranger.status_code == 302 and stranger.headers["Location"].endswith("/reset-password")
    make_account()
    form = open_link(client, emailed_token(app, client, smtp))
    changed = client.post(
        "/reset-password/new",
        data={"csrf_token": csrf_token(page(form)), "new_password": OTHER_STRONG_PASSWORD, "confirm_password": OTHER_STRONG_PASSWORD},
    )
    assert changed.status_code == 302
    # Reloading it, or switching its language, still shows it a while...
    for _ in range(2):
        assert "Your password has been changed" in page(client.get("/reset-password/done"))
    # ... and then no more.
    with time_machine.travel(utcnow() + timedelta(minutes=DONE_PAGE_MINUTES + 1)):
        assert client.get("/reset-password/done").status_code == 302
    assert app.test_client().get("/reset-password/done").status_code == 302


def test_without_sign_in_url_the_done_page_says_where_to_sign_in_and_links_nowhere(client: FlaskClient) -> None:
    """The service's own root only leads back to the reset box: without SIGN_IN_URL there is no
    "Sign in" link at all, only where to go."""
    just_changed(client)
    html = page(client.get("/reset-password/done"))
    assert "Your password has been changed" in html
    assert "You can now sign in on the Canadian Insulin website with your new password." in html
    assert 'class="button"' not in html
    assert f'href="{PUBLIC_BASE_URL}/"' not in html and 'href="/"' not in html


def test_a_used_link_leads_to_a_page_offering_a_new_one(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    token = emailed_token(app, client, smtp)
    form = open_link(client, token)
    client.post(
        "/reset-password/new",
        data={
            "csrf_token": csrf_token(page(form)),
            "new_password": OTHER_STRONG_PASSWORD,
            "confirm_password": OTHER_STRONG_PASSWORD,
        },
    )
    again = open_link(client, token)
    assert again.status_code == 410
    html = page(again)
    assert "already been used" in html
    assert 'href="/reset-password"' in html and "Send me a new link" in html


def test_an_expired_link_leads_to_a_page_offering_a_new_one(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    token = emailed_token(app, client, smtp)
    with time_machine.travel(utcnow() + timedelta(seconds=app.config["RESET_TOKEN_MAX_AGE"] + 60), tick=False):
        response = open_link(client, token)
    assert response.status_code == 410
    html = page(response)
    assert "expired" in html
    assert 'href="/reset-password"' in html and "Send me a new link" in html


def test_the_new_password_page_without_a_link_offers_a_new_one(client: FlaskClient) -> None:
    response = client.get("/reset-password/new")
    assert response.status_code == 400
    assert "Send me a new link" in page(response)


# --- login help -------------------------------------------------------------------------------


def test_login_help_lists_every_way_to_reach_customer_service(client: FlaskClient) -> None:
    with time_machine.travel(WEDNESDAY_3PM_UTC, tick=False):
        response = client.get("/login-help")
    assert response.status_code == 200
    html = page(response)
    assert "Still having trouble logging in?" in html
    assert "Monday to Friday, 9:00 AM to 6:00 PM" in html
    assert '<a href="tel:+18445607790">1-844-560-7790</a>' in html
    assert '<a href="mailto:service@canadianinsulin.com">service@canadianinsulin.com</a>' in html
    assert "1-866-951-0118" in html
    # The zone as a customer says it, not as the settings spell it.
    assert "Eastern Time" in html
    assert "America/New_York" not in html


def test_login_help_says_open_now_on_a_weekday_afternoon(client: FlaskClient) -> None:
    with time_machine.travel(WEDNESDAY_3PM_UTC, tick=False):
        html = page(client.get("/login-help"))
    assert "Customer service is open now." in html
    assert "closed" not in html


def test_login_help_says_closed_on_saturday_and_when_it_opens_again(client: FlaskClient) -> None:
    with time_machine.travel(SATURDAY_3PM_UTC, tick=False):
        html = page(client.get("/login-help"))
    assert "We're closed now." in html
    assert 'We open again <time datetime="2026-11-30T09:00:00-05:00">Monday at 9:00 AM Eastern Time</time>.' in html
    assert "open now" not in html
    assert "status-closed" not in html  # the alarming red of an error is for errors


@pytest.mark.parametrize(
    ("moment", "english", "french"),
    [
        # 13:02 UTC on Monday 30 November is 8:02 in New York: opening later that day.
        (datetime(2026, 11, 30, 13, 2, tzinfo=UTC), "today at 9:00 AM Eastern Time", "aujourd’hui à 09:00, heure de l’Est"),
        # 23:30 UTC on Tuesday is 18:30 in New York: opening the next morning.
        (datetime(2026, 12, 1, 23, 30, tzinfo=UTC), "tomorrow at 9:00 AM Eastern Time", "demain à 09:00, heure de l’Est"),
    ],
)
def test_login_help_says_today_or_tomorrow_rather_than_the_day_s_name(
    client: FlaskClient, moment: datetime, english: str, french: str
) -> None:
    """"We open again Monday" read early on a Monday leaves a caller wondering which Monday."""
    with time_machine.travel(moment, tick=False):
        assert f">{english}</time>." in page(client.get("/login-help"))
        assert f">{french}</time>" in page(client.get("/login-help", headers=FRENCH))


def test_login_help_when_closed_says_what_the_customer_can_do_meanwhile(client: FlaskClient) -> None:
    with time_machine.travel(SATURDAY_3PM_UTC, tick=False):
        html = page(client.get("/login-help"))
    meanwhile = html[html.index("Meanwhile you can:"):]
    meanwhile = meanwhile[:meanwhile.index("</ul>")]
    assert '<a href="/reset-password">' in meanwhile
    assert '<a href="/forgot-username">' in meanwhile
    assert '<a href="mailto:service@canadianinsulin.com">service@canadianinsulin.com</a>' in meanwhile


def test_login_help_when_open_has_no_meanwhile(client: FlaskClient) -> None:
    with time_machine.travel(WEDNESDAY_3PM_UTC, tick=False):
        html = page(client.get("/login-help"))
    assert "Meanwhile" not in html


def test_login_help_says_when_it_opens_in_french_words(client: FlaskClient) -> None:
    with time_machine.travel(SATURDAY_3PM_UTC, tick=False):
        html = page(client.get("/login-help", headers=FRENCH))
    assert "Nous sommes fermés en ce moment." in html
    assert "lundi à 09:00, heure de l’Est</time>" in html
    assert "En attendant, vous pouvez :" in html
    assert "America/New_York" not in html and "EST" not in html


# --- the show-password toggle, the favicon ----------------------------------------------------

SCRIPT_TAG = re.compile(r"<script\b[^>]*>")


def test_pages_run_only_the_sites_own_script_files(client: FlaskClient) -> None:
    response = client.get("/reset-password")
    policy = response.headers["Content-Security-Policy"]
    directives = {part.strip().split(" ", 1)[0]: part.strip() for part in policy.split(";") if part.strip()}
    assert directives["script-src"] == "script-src 'self'", policy
    assert "unsafe" not in policy
    html = page(response)
    tags = SCRIPT_TAG.findall(html)
    assert tags, html
    for tag in tags:  # no inline script: each one names its file on this site
        assert re.search(r'\ssrc="/static/[\w.-]+\.js"', tag), tag
    assert html.count("<script") == html.count("</script>") == len(tags)
    assert not re.search(r"<script\b[^>]*>[^<]+</script>", html)
    assert not re.search(r"\son[a-z]+=", html)  # nor inline event handlers


@pytest.mark.parametrize(
    ("headers", "show", "hide"),
    [({}, "Show password", "Hide password"), (FRENCH, "Afficher le mot de passe", "Masquer le mot de passe")],
    ids=["en", "fr"],
)
def test_the_show_password_script_gets_its_words_from_the_page(
    client: FlaskClient, headers: dict[str, str], show: str, hide: str
) -> None:
    html = page(client.get("/support/login", headers=headers))
    tag = next(tag for tag in SCRIPT_TAG.findall(html) if "reveal-password.js" in tag)
    assert f'data-show="{show}"' in tag and f'data-hide="{hide}"' in tag
    assert "defer" in tag
    # Without JavaScript nothing of the toggle is on the page: the script adds the button.
    assert show not in html.replace(tag, "")
    with client.get(re.search(r'src="([^"]+)"', tag).group(1)) as script:
        assert script.status_code == 200 and script.mimetype == "text/javascript"
        assert "aria-controls" in script.get_data(as_text=True)


def test_every_page_has_a_favicon_of_its_own(client: FlaskClient) -> None:
    for path in ("/reset-password", "/login-help", "/support/login", "/api/v1/docs"):
        html = page(client.get(path))
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html, path
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
        assert icon.get_data(as_text=True).lstrip().startswith("<svg")


def test_favicon_ico_leads_to_the_favicon(client: FlaskClient) -> None:
    """Browsers and crawlers ask for /favicon.ico whatever the page says: no 404 in the logs."""
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response.headers["Location"] == "/static/favicon.svg"
    with client.get("/favicon.ico", follow_redirects=True) as icon:
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


# --- headers and hosts on every page ----------------------------------------------------------


def every_page(app: Flask, client: FlaskClient, smtp: SmtpSink) -> dict[str, TestResponse]:
    """One answer of each page the service shows, errors included."""
    token = emailed_token(app, client, smtp)
    answers = {
        "reset form": client.get("/reset-password"),
        "check your email": post_form(client, "/reset-password", {"username": "jane"}),
        "csrf refused": client.post("/reset-password", data={"username": "jane"}),
        "link redirect": client.get(f"/reset-password/{token}"),
        "new password form": client.get("/reset-password/new"),
    }
    just_changed(client)
    answers["done"] = client.get("/reset-password/done")
    client.get("/reset-password/not-a-real-token-at-all")
    answers["link problem"] = client.get("/reset-password/new")
    answers["login help"] = client.get("/login-help")
    answers["not found"] = client.get("/no-such-page")
    answers["api contact"] = client.get("/api/v1/contact")
    assert answers["new password form"].status_code == 200
    assert answers["link problem"].status_code == 400
    return answers


def test_every_page_sends_the_security_headers(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    for name, response in every_page(app, client, smtp).items():
        policy = response.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy, name
        assert "default-src 'none'" in policy, name
        assert response.headers.get("X-Content-Type-Options") == "nosniff", name
        assert response.headers.get("Referrer-Policy") == "no-referrer", name


def test_no_page_refers_to_another_host(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    for name, response in every_page(app, client, smtp).items():
        if response.mimetype != "text/html":
            continue
        html = response.get_data(as_text=True)
        references = re.findall(r'\b(?:src|href|action)\s*=\s*"([^"]*)"', html)
        assert references, name
        for reference in references:
            assert (
                reference.startswith(("/", "#", "tel:", "mailto:", PUBLIC_BASE_URL + "/"))
                and not reference.startswith("//")
            ), f"{name}: {reference}"
        outside = [url for url in re.findall(r"https?://[^\s\"'<>]+", html) if not url.startswith(PUBLIC_BASE_URL)]
        assert outside == [], name
