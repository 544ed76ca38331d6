"""French: the catalog covers every string, pages and mail speak the right language, the API
stays English, and the language switch never redirects off the site."""

from __future__ import annotations

import ast
import html
import logging
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from werkzeug.test import TestResponse

from service.models import Account
from service.platform.clock import utcnow
from service.platform.i18n import lazy_text, speaking
from service.web.pages import SESSION_DONE_KEY
from tests.conftest import (
    OTHER_STRONG_PASSWORD,
    STRONG_PASSWORD,
    SmtpSink,
    run_dispatcher,
    smtp_settings,
)
from tests.formtools import html_of, link_token_in, post_form

ROOT = Path(__file__).resolve().parents[2]
FRENCH_CATALOG = ROOT / "translations" / "fr" / "LC_MESSAGES" / "messages.po"
PYBABEL = Path(sys.executable).parent / "pybabel"

PUBLIC_BASE_URL = "http://account.example.com"
FRENCH = {"Accept-Language": "fr-CA,fr;q=0.9"}
ENGLISH = {"Accept-Language": "en"}
# A %-style placeholder as Python formats it: %(name)s, %(minimum)d ...
PLACEHOLDER = re.compile(r"%\(([^)]+)\)[#0\- +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
TAG = re.compile(r"<[^>]+>")


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, smtp: SmtpSink) -> dict[str, Any]:
    """Mail to the sink, links on a public origin; a test may add more."""
    return {**smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, **getattr(request, "param", {})}


# --- helpers ----------------------------------------------------------------------------------


def text_of_page(response: TestResponse) -> str:
    """A page's HTML with entities decoded, so `d'utilisateur` matches however it was escaped."""
    assert response.mimetype == "text/html", response.mimetype
    return html.unescape(response.get_data(as_text=True))


def page_language(response: TestResponse) -> str:
    match = re.search(r'<html lang="([^"]+)"', response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)
    return match.group(1)


def title_of(response: TestResponse) -> str:
    match = re.search(r"<title>(.*?)</title>", text_of_page(response), re.DOTALL)
    assert match
    return match.group(1)


def choose_language(client: FlaskClient, code: str, next_path: str = "/login-help") -> TestResponse:
    return client.get(f"/language/{code}", query_string={"next": next_path})


def language_cookie(response: TestResponse) -> str | None:
    """The value the answer sets the `lang` cookie to, or None when it leaves it alone."""
    for header in response.headers.getlist("Set-Cookie"):
        name, _, rest = header.partition("=")
        if name == "lang":
            return rest.split(";", 1)[0]
    return None


def redirect_path(response: TestResponse) -> str:
    """Where a redirect goes, refusing any that leaves the site."""
    assert response.status_code == 302, response.status_code
    location = urlsplit(response.headers["Location"])
    assert location.scheme in ("", "http") and location.netloc in ("", "localhost"), response.headers["Location"]
    return location.path


def create_account_over_api(
    client: FlaskClient, key: dict[str, str], username: str, language: str | None
) -> dict[str, Any]:
    body = {"username": username, "email": f"{username}@example.com", "password": STRONG_PASSWORD}
    if language is not None:
        body["language"] = language
    response = client.post("/api/v1/accounts", json=body, headers=key)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def only_mail_to(smtp: SmtpSink, address: str) -> EmailMessage:
    [mail] = smtp.to(address)
    return mail


def token_in(message: EmailMessage) -> str:
    return link_token_in(message, PUBLIC_BASE_URL)


def assert_french_reset_mail(mail: EmailMessage, username: str) -> None:
    assert mail["Subject"] == "Réinitialiser votre mot de passe"
    text, markup = SmtpSink.text_of(mail), html.unescape(html_of(mail))
    assert '<html lang="fr">' in markup
    for part in (text, markup):
        assert f"Bonjour {username}," in part
        assert "Quelqu'un a demandé la réinitialisation du mot de passe de votre compte Canadian Insulin." in part
        assert "Le lien ne fonctionne qu'une seule fois et expire dans 60 minutes." in part
        assert "Des questions? Appelez le service à la clientèle" in part
        assert "du lundi au vendredi" in part
        for english in ("Hello", "Someone asked", "expires in", "Questions? Call", "Monday"):
            assert english not in part, english


def assert_english_reset_mail(mail: EmailMessage, username: str) -> None:
    assert mail["Subject"] == "Reset your password"
    text, markup = SmtpSink.text_of(mail), html.unescape(html_of(mail))
    assert '<html lang="en">' in markup
    for part in (text, markup):
        assert f"Hello {username}," in part
        assert "Someone asked to reset the password" in part
        assert "Monday to Friday" in part
        assert "Bonjour" not in part


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as file:
        return read_po(file)


def placeholders(text: str) -> Counter[str]:
    return Counter(PLACEHOLDER.findall(text))


# --- the catalog ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_template(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Every string marked for translation in the code and templates now, extracted afresh."""
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    subprocess.run(
        [str(PYBABEL), "extract", "-F", "babel.cfg", "-k", "_l", "-k", "lazy_text", "--no-location", "-o", str(pot), "."],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
    )
    return read_catalog(pot)


@pytest.fixture(scope="module")
def french() -> Catalog:
    return read_catalog(FRENCH_CATALOG)


def test_every_marked_string_has_a_french_translation(fresh_template: Catalog, french: Catalog) -> None:
    wanted = [message.id for message in fresh_template if message.id]
    assert len(wanted) > 100  # the extraction found the strings: an empty one would pass anything
    untranslated = []
    for msgid in wanted:
        entry = french.get(msgid)
        if entry is None:
            untranslated.append(f"not in the French catalog: {msgid!r}")
        elif not entry.string:
            untranslated.append(f"empty msgstr: {msgid!r}")
        elif entry.fuzzy:
            untranslated.append(f"fuzzy: {msgid!r}")
    assert not untranslated, (
        "run `make translations-extract`, translate these in "
        "translations/fr/LC_MESSAGES/messages.po, then `make translations-compile`:\n" + "\n".join(untranslated)
    )


def test_french_translations_keep_every_placeholder_of_the_english(french: Catalog) -> None:
    different = [
        f"{message.id!r}: {sorted(placeholders(message.id).elements())} "
        f"became {sorted(placeholders(message.string).elements())}"
        for message in french
        if message.id and message.string and placeholders(message.id) != placeholders(message.string)
    ]
    assert not different, "\n".join(different)
    # Babel's own check: a python-format msgstr must be usable with the msgid's arguments.
    problems = [f"{message.id!r}: {errors}" for message, errors in french.check()]
    assert not problems, "\n".join(problems)


def test_french_translations_keep_the_html_tags_of_the_english(french: Catalog) -> None:
    different = [
        f"{message.id!r}: {TAG.findall(message.id)} became {TAG.findall(message.string)}"
        for message in french
        if message.id and message.string and Counter(TAG.findall(message.id)) != Counter(TAG.findall(message.string))
    ]
    assert not different, "\n".join(different)


def test_the_french_catalog_has_no_fuzzy_entries(french: Catalog) -> None:
    assert not french.fuzzy, "the catalog header is marked fuzzy"
    assert [message.id for message in french if message.id and message.fuzzy] == []


# --- parameters that people typed stay text in HTML --------------------------------------------


def test_a_lazy_text_escapes_its_parameters_in_html_and_keeps_them_as_typed_in_text(app: Flask) -> None:
    typed = '<img src=x onerror=alert(1)> & "CS-1"'
    message = lazy_text(
        "Customer service sent you a password reset (ticket %(ticket)s), and it was used to choose this password.",
        ticket=typed,
    )
    with app.test_request_context(), speaking("fr"):
        assert typed in str(message) and "service à la clientèle" in str(message)
        shown = str(escape(message))
        assert "<img" not in shown and str(escape(typed)) in shown and "service à la clientèle" in shown


def test_no_lazy_translation_takes_a_parameter_that_is_not_a_constant() -> None:
    # flask_babel's lazy strings pass for safe HTML, parameters and all: one fed what someone
    # typed must be a `lazy_text`, which escapes them.
    found = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_l":
                for keyword in node.keywords:
                    constant = isinstance(keyword.value, ast.Constant) or (
                        isinstance(keyword.value, ast.Name) and keyword.value.id.isupper()
                    )
                    if not constant:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {keyword.arg}=")
    assert found == []


# --- choosing the language of pages -----------------------------------------------------------


def test_a_french_browser_gets_the_reset_page_in_french(client: FlaskClient) -> None:
    response = client.get("/reset-password", headers=FRENCH)
    assert response.status_code == 200
    assert page_language(response) == "fr"
    text = text_of_page(response)
    assert title_of(response).startswith("Réinitialiser votre mot de passe")
    assert "<h1>Réinitialiser votre mot de passe</h1>" in text
    assert "Nom d'utilisateur" in text
    assert "Vous avez encore de la difficulté à vous connecter?" in text
    assert "Reset Your Password" not in text
    assert "Username" not in text


def test_a_browser_without_french_gets_the_reset_page_in_english(client: FlaskClient) -> None:
    for headers in ({}, ENGLISH, {"Accept-Language": "de-DE,de;q=0.9"}):
        response = client.get("/reset-password", headers=headers)
        assert page_language(response) == "en", headers
        assert "<h1>Reset Your Password</h1>" in text_of_page(response)


def test_choosing_french_is_remembered_over_the_browsers_language(client: FlaskClient) -> None:
    chosen = choose_language(client, "fr", "/login-help")
    assert redirect_path(chosen) == "/login-help"
    assert language_cookie(chosen) == "fr"
    cookie = next(h for h in chosen.headers.getlist("Set-Cookie") if h.startswith("lang="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie

    for path in ("/login-help", "/reset-password"):
        response = client.get(path, headers=ENGLISH)
        assert page_language(response) == "fr", path
    assert "Vous avez encore de la difficulté à vous connecter?" in text_of_page(client.get("/login-help", headers=ENGLISH))


def test_choosing_english_switches_a_french_visitor_back(client: FlaskClient) -> None:
    choose_language(client, "fr")
    back = choose_language(client, "en", "/reset-password")
    assert redirect_path(back) == "/reset-password"
    assert language_cookie(back) == "en"
    response = client.get("/reset-password", headers=FRENCH)
    assert page_language(response) == "en"
    assert "<h1>Reset Your Password</h1>" in text_of_page(response)


def test_a_regional_code_chooses_its_language(client: FlaskClient) -> None:
    assert language_cookie(choose_language(client, "fr-CA")) == "fr"
    assert page_language(client.get("/login-help", headers=ENGLISH)) == "fr"


@pytest.mark.parametrize("code", ["de", "xx", "english"])
def test_an_unknown_language_code_changes_nothing(client: FlaskClient, code: str) -> None:
    choose_language(client, "fr")
    unknown = choose_language(client, code, "/login-help")
    assert redirect_path(unknown) == "/login-help"
    assert language_cookie(unknown) is None
    assert page_language(client.get("/login-help", headers=ENGLISH)) == "fr"


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/", "//evil.example", "/\\evil.example", "\\\\evil.example", "http:/evil.example", "", "login-help"],
)
def test_the_language_switch_never_redirects_off_the_site(client: FlaskClient, next_path: str) -> None:
    response = choose_language(client, "fr", next_path)
    assert response.status_code == 302
    assert response.headers["Location"] in ("/reset-password", "http://localhost/reset-password")
    assert language_cookie(response) == "fr"  # the choice itself still counts


def test_a_tab_in_next_does_not_become_a_protocol_relative_redirect(client: FlaskClient) -> None:
    response = choose_language(client, "fr", "/\t/evil.example")
    assert not response.headers["Location"].startswith("//"), response.headers["Location"]


def test_a_newline_in_next_redirects_to_the_reset_page(client: FlaskClient) -> None:
    response = choose_language(client, "fr", "/\n/evil.example")
    assert redirect_path(response) == "/reset-password"


def test_the_help_page_in_french_names_the_days_in_french(client: FlaskClient) -> None:
    response = client.get("/login-help", headers=FRENCH)
    assert response.status_code == 200
    assert page_language(response) == "fr"
    text = text_of_page(response)
    assert "du lundi au vendredi" in text  # the default CONTACT_HOURS, Mon-Fri
    assert "<h1>Vous avez encore de la difficulté à vous connecter?</h1>" in text
    assert "Téléphone" in text and "Télécopieur" in text and "Courriel" in text
    assert "service à la clientèle est ouvert" in text or "Nous sommes fermés" in text  # open now, or closed now
    for english in ("Monday", "Friday", "Customer service is", "Phone", "Hours"):
        assert english not in text, english


PAGES = ["/reset-password", "/login-help", "/reset-password/done", "/reset-password/new", "/support/login", "/no-such-page"]


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(("headers", "other"), [(ENGLISH, "fr"), (FRENCH, "en")], ids=["english", "french"])
def test_every_page_links_to_the_other_language_and_back_to_itself(
    client: FlaskClient, path: str, headers: dict[str, str], other: str
) -> None:
    if path == "/reset-password/done":  # shown only to the browser that just changed its password
        with client.session_transaction() as session:
            session[SESSION_DONE_KEY] = int(utcnow().timestamp())
    response = client.get(path, headers=headers)
    links = re.findall(r'<a href="(/language/[^"]+)"[^>]*hreflang="([a-z]+)"', response.get_data(as_text=True))
    assert len(links) == 1, links
    href, hreflang = links[0]
    href = html.unescape(href)
    assert hreflang == other
    assert urlsplit(href).path == f"/language/{other}"
    [next_path] = parse_qs(urlsplit(href).query)["next"]
    assert urlsplit(next_path).path == path

    followed = client.get(href, headers=headers)
    assert redirect_path(followed) == path
    assert page_language(client.get(path, headers=headers)) == other


# --- the API stays English --------------------------------------------------------------------


def speak_french_everywhere(client: FlaskClient) -> None:
    """A visitor who chose French on the pages; the API must not care."""
    choose_language(client, "fr")


def test_an_api_error_title_stays_english_for_a_french_caller(client: FlaskClient) -> None:
    speak_french_everywhere(client)
    response = client.post("/api/v1/auth/verify", json={"username": "jane", "password": "x"}, headers=FRENCH)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["title"] == "A valid API key is required"


def test_api_password_problems_stay_english_for_a_french_caller(
    client: FlaskClient, client_key: dict[str, str]
) -> None:
    speak_french_everywhere(client)
    response = client.post(
        "/api/v1/accounts",
        json={"username": "pierre", "email": "pierre@example.com", "password": "password", "language": "fr"},
        headers={**client_key, **FRENCH},
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "weak_password"
    assert body["title"] == "The new password is not accepted"
    assert body["errors"][0]["message"] == "Use at least 15 characters; this one has 8."

    bad_token = client.post(
        "/api/v1/password-resets/confirm", json={"token": "nonsense", "new_password": OTHER_STRONG_PASSWORD},
        headers=FRENCH,
    )
    assert bad_token.get_json()["code"] == "token_invalid"
    assert bad_token.get_json()["title"] == "This reset link is not valid"


def test_a_weak_password_on_confirm_is_refused_in_english_for_a_french_caller(
    app: Flask, client: FlaskClient, client_key: dict[str, str], smtp: SmtpSink
) -> None:
    create_account_over_api(client, client_key, "jeanne", "fr")
    assert client.post("/api/v1/password-resets", json={"username": "jeanne"}, headers=FRENCH).status_code == 202
    run_dispatcher(app)
    token = token_in(only_mail_to(smtp, "jeanne@example.com"))

    speak_french_everywhere(client)
    response = client.post(
        "/api/v1/password-resets/confirm", json={"token": token, "new_password": "short"}, headers=FRENCH
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "weak_password"
    assert body["title"] == "The new password is not accepted"
    assert body["errors"][0]["message"] == "Use at least 15 characters; this one has 5."


# --- the language of mail ---------------------------------------------------------------------


def test_an_account_created_in_french_gets_its_reset_mail_in_french_from_an_english_page(
    app: Flask, client: FlaskClient, client_key: dict[str, str], smtp: SmtpSink
) -> None:
    assert create_account_over_api(client, client_key, "jeanne", "fr")["language"] == "fr"
    sent = post_form(client, "/reset-password", {"username": "jeanne"}, headers=ENGLISH)
    assert sent.status_code == 200
    assert page_language(sent) == "en"
    run_dispatcher(app)
    assert_french_reset_mail(only_mail_to(smtp, "jeanne@example.com"), "jeanne")


def test_an_account_created_in_english_gets_english_mail_from_a_french_page(
    app: Flask, client: FlaskClient, client_key: dict[str, str], smtp: SmtpSink
) -> None:
    create_account_over_api(client, client_key, "john", "en")
    assert post_form(client, "/reset-password", {"username": "john"}, headers=FRENCH).status_code == 200
    run_dispatcher(app)
    assert_english_reset_mail(only_mail_to(smtp, "john@example.com"), "john")


@pytest.mark.parametrize("how", ["cookie", "accept-language"])
def test_an_account_without_a_language_gets_mail_in_french_when_a_french_page_asked(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink, how: str
) -> None:
    make_account()
    if how == "cookie":
        choose_language(client, "fr", "/reset-password")
        headers = ENGLISH
    else:
        headers = FRENCH
    sent = post_form(client, "/reset-password", {"username": "jane"}, headers=headers)
    assert sent.status_code == 200
    assert "Consultez vos courriels" in text_of_page(sent)
    run_dispatcher(app)
    assert_french_reset_mail(only_mail_to(smtp, "jane@example.com"), "jane")


def test_an_account_without_a_language_gets_mail_in_english_when_an_english_page_asked(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    assert post_form(client, "/reset-password", {"username": "jane"}, headers=ENGLISH).status_code == 200
    run_dispatcher(app)
    assert_english_reset_mail(only_mail_to(smtp, "jane@example.com"), "jane")


def test_the_api_language_field_chooses_the_mail_language(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    make_account(username="john", email="john@example.com")
    assert client.post("/api/v1/password-resets", json={"username": "jane", "language": "fr"}).status_code == 202
    assert client.post("/api/v1/password-resets", json={"username": "john"}, headers=FRENCH).status_code == 202
    run_dispatcher(app)
    assert_french_reset_mail(only_mail_to(smtp, "jane@example.com"), "jane")
    assert_english_reset_mail(only_mail_to(smtp, "john@example.com"), "john")  # the API ignores Accept-Language


@pytest.mark.parametrize("app_settings", [{"RESET_METHOD": "temporary_password"}], indirect=True, ids=["temporary_password"])
def test_a_temporary_password_mail_is_in_french_for_a_french_account(
    app: Flask, client: FlaskClient, client_key: dict[str, str], smtp: SmtpSink
) -> None:
    create_account_over_api(client, client_key, "jeanne", "fr")
    assert post_form(client, "/reset-password", {"username": "jeanne"}, headers=ENGLISH).status_code == 200
    run_dispatcher(app)
    mail = only_mail_to(smtp, "jeanne@example.com")
    assert mail["Subject"] == "Votre mot de passe temporaire"
    for part in (SmtpSink.text_of(mail), html.unescape(html_of(mail))):
        assert "Voici un mot de passe temporaire pour votre compte Canadian Insulin" in part
        assert "votre mot de passe actuel continue de fonctionner" in part
        assert "Here is" not in part


def notice_after_a_reset_over_the_api(app: Flask, client: FlaskClient, smtp: SmtpSink, request: dict[str, str]) -> EmailMessage:
    """Ask for a reset with `request`, choose the password over the (English) API: the notice."""
    address = f"{request['username']}@example.com"
    assert client.post("/api/v1/password-resets", json=request).status_code == 202
    run_dispatcher(app)
    token = token_in(only_mail_to(smtp, address))
    confirmed = client.post("/api/v1/password-resets/confirm", json={"token": token, "new_password": OTHER_STRONG_PASSWORD})
    assert confirmed.status_code == 204
    run_dispatcher(app)
    [notice] = [m for m in smtp.to(address) if m["Subject"] != "Réinitialiser votre mot de passe"]
    return notice


def test_the_password_changed_notice_follows_a_french_accounts_language(
    app: Flask, client: FlaskClient, client_key: dict[str, str], smtp: SmtpSink
) -> None:
    create_account_over_api(client, client_key, "jeanne", "fr")
    # Confirmed over the (English) API: the notice still speaks the account's French.
    notice = notice_after_a_reset_over_the_api(app, client, smtp, {"username": "jeanne"})
    assert notice["Subject"] == "Votre mot de passe a été modifié"
    for part in (SmtpSink.text_of(notice), html.unescape(html_of(notice))):
        assert "Bonjour jeanne," in part
        assert "Le mot de passe de votre compte Canadian Insulin a été modifié le" in part
        assert "Sinon, appelez immédiatement le service à la clientèle." in part
        assert "was changed" not in part


def test_the_password_changed_notice_speaks_the_reset_mails_language_for_an_account_without_one(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    """The website asked in French for an account with no language; the customer then chose a
    password through the website (the API, English): the notice speaks French, as the mail did."""
    make_account()
    notice = notice_after_a_reset_over_the_api(app, client, smtp, {"username": "jane", "language": "fr"})
    assert notice["Subject"] == "Votre mot de passe a été modifié"
    assert "Bonjour jane," in SmtpSink.text_of(notice)


def test_the_password_changed_notice_follows_an_english_accounts_language_after_a_french_page(
    app: Flask, client: FlaskClient, client_key: dict[str, str], smtp: SmtpSink
) -> None:
    create_account_over_api(client, client_key, "john", "en")
    client.post("/api/v1/password-resets", json={"username": "john"})
    run_dispatcher(app)
    token = token_in(only_mail_to(smtp, "john@example.com"))
    choose_language(client, "fr")
    client.get(f"/reset-password/{token}")
    changed = post_form(
        client, "/reset-password/new",
        {"new_password": OTHER_STRONG_PASSWORD, "confirm_password": OTHER_STRONG_PASSWORD}, headers=FRENCH,
    )
    assert redirect_path(changed) == "/reset-password/done"
    assert "Votre mot de passe a été modifié" in text_of_page(client.get("/reset-password/done"))
    run_dispatcher(app)
    [notice] = [m for m in smtp.to("john@example.com") if m["Subject"] != "Reset your password"]
    assert notice["Subject"] == "Your password was changed"
    assert "The password of your Canadian Insulin account was changed on" in SmtpSink.text_of(notice)


# --- forms in French --------------------------------------------------------------------------


def test_a_french_reset_form_says_what_is_wrong_in_french(client: FlaskClient) -> None:
    response = post_form(client, "/reset-password", {"username": ""}, headers=FRENCH)
    assert response.status_code == 400
    assert page_language(response) == "fr"
    text = text_of_page(response)
    assert "Entrez votre nom d'utilisateur." in text
    assert "Enter your username." not in text


def test_a_french_form_without_its_security_token_says_so_in_french(client: FlaskClient) -> None:
    response = client.post("/reset-password", data={"username": "jane"}, headers=FRENCH)
    assert response.status_code == 400
    text = text_of_page(response)
    assert "<h1>Ce formulaire a expiré</h1>" in text
    assert "Le jeton de sécurité du formulaire manquait ou avait expiré." in text


def test_a_french_new_password_form_explains_its_rules_and_refusals_in_french(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    assert post_form(client, "/reset-password", {"username": "jane"}, headers=FRENCH).status_code == 200
    run_dispatcher(app)
    client.get(f"/reset-password/{token_in(only_mail_to(smtp, 'jane@example.com'))}")

    form = client.get("/reset-password/new", headers=FRENCH)
    text = text_of_page(form)
    assert "<h1>Choisissez un nouveau mot de passe</h1>" in text
    assert "Au moins 15 caractères, au plus 256." in text
    assert "Nouveau mot de passe (confirmation)" in text

    short = post_form(client, "/reset-password/new", {"new_password": "short", "confirm_password": "short"}, headers=FRENCH)
    assert short.status_code == 400
    assert "Utilisez au moins 15 caractères; celui-ci en compte 5." in text_of_page(short)

    mismatched = post_form(
        client, "/reset-password/new",
        {"new_password": STRONG_PASSWORD, "confirm_password": OTHER_STRONG_PASSWORD}, headers=FRENCH,
    )
    assert mismatched.status_code == 400
    text = text_of_page(mismatched)
    assert "Les deux mots de passe ne sont pas identiques." in text
    assert "The two passwords are not the same." not in text


def test_french_error_pages_carry_no_english(client: FlaskClient) -> None:
    no_link = text_of_page(client.get("/reset-password/new", headers=FRENCH))
    assert "Open the link from your email" not in no_link
    missing = text_of_page(client.get("/no-such-page", headers=FRENCH))
    assert "Not Found" not in missing


def test_speaking_sets_the_templates_language_for_its_block_alone(app: Flask) -> None:
    from flask import render_template_string

    from service.platform.i18n import speaking

    template = "{{ _('Hello,') }} {% trans %}Hello,{% endtrans %}"
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        page_before = render_template_string(template)
        with speaking("en"):
            english = render_template_string(template)
            with speaking("fr"):
                nested_french = render_template_string(template)
            english_again = render_template_string(template)
        page_after = render_template_string(template)
    with app.app_context(), speaking(None):
        fallback = render_template_string(template)
    assert page_before == page_after == nested_french == "Bonjour, Bonjour,"
    assert english == english_again == fallback == "Hello, Hello,"


def test_uncompiled_translations_stop_production_and_are_named_elsewhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the compiled French catalog every French mail and page came in English, and
    nothing said why."""
    from service.platform.config import ConfigError
    from service.platform.i18n import check_catalogs, uncompiled_languages

    (tmp_path / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "fr" / "LC_MESSAGES" / "messages.po").write_text("")
    assert uncompiled_languages(tmp_path) == ["fr"]
    with pytest.raises(ConfigError, match="fr are not compiled: run `make translations-compile`"):
        check_catalogs(tmp_path, production=True)
    with caplog.at_level(logging.WARNING):
        check_catalogs(tmp_path, production=False)
    assert "translations of fr are not compiled" in caplog.text
    (tmp_path / "fr" / "LC_MESSAGES" / "messages.mo").write_bytes(b"")
    assert uncompiled_languages(tmp_path) == []
    check_catalogs(tmp_path, production=True)


def test_the_project_s_own_catalogs_are_compiled() -> None:
    from service import PROJECT_ROOT
    from service.platform.i18n import uncompiled_languages

    assert uncompiled_languages(PROJECT_ROOT / "translations") == []
