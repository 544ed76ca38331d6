"""A form field sent as a file upload (multipart) is a missing field, on every HTML form: the
usual friendly page with a 4xx, never a 500. Forms read text fields only, as the rate limits do."""

from __future__ import annotations

import ast
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.accounts.reportlinks import report_token_for_reset
from service.models import Account
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import csrf_token_in
from tests.support.test_support_console import AGENT_PASSWORD, make_agent, sign_in  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_BASE_URL = "http://account.example.com"


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "RATELIMIT_ENABLED": False}


def as_file(text: str) -> tuple[io.BytesIO, str]:
    return io.BytesIO(text.encode()), "hostname"


def assert_friendly_refusal(response: TestResponse) -> None:
    html = response.get_data(as_text=True)
    assert 400 <= response.status_code < 500, (response.status_code, html[:2000])
    assert response.mimetype == "text/html"
    assert "Traceback" not in html and "FileStorage" not in html


def link_in_mail(smtp: SmtpSink, path: str) -> str:
    """The newest link to `path` in the mail sent so far."""
    for message in reversed(smtp.messages):
        match = re.search(re.escape(PUBLIC_BASE_URL) + re.escape(path) + r"(\S+)", SmtpSink.text_of(message))
        if match:
            return match.group(1)
    raise AssertionError(f"no mail holds a link to {path}")


def customer_reset_session(app: Flask, client: FlaskClient, smtp: SmtpSink) -> str:
    """A browser that opened a reset link: the new-password form is its."""
    page = client.get("/reset-password")
    client.post("/reset-password", data={"csrf_token": csrf_token_in(page.get_data(as_text=True)), "username": "jane"})
    run_dispatcher(app)
    assert client.get(f"/reset-password/{link_in_mail(smtp, '/reset-password/')}").status_code == 302
    return "/reset-password/new"


def report_page(app: Flask, client: FlaskClient, smtp: SmtpSink) -> str:
    customer_reset_session(app, client, smtp)
    with app.app_context():
        return f"/report/{report_token_for_reset(1)}"


def email_confirmation(app: Flask, client: FlaskClient, smtp: SmtpSink, key: dict[str, str]) -> str:
    started = client.post("/api/v1/support/accounts/jane/email", json={"email": "new@example.com"}, headers=key)
    assert started.status_code == 202
    run_dispatcher(app)
    assert client.get(f"/confirm-email/{link_in_mail(smtp, '/confirm-email/')}").status_code == 302
    return "/confirm-email"


def signed_in_agent(client: FlaskClient) -> None:
    assert sign_in(client, "alice", AGENT_PASSWORD).status_code == 302


# (where the form is, its text fields with good values, what the browser must have done first)
FORMS: list[tuple[str, dict[str, str], str]] = [
    ("/reset-password", {"username": "jane"}, ""),
    ("/reset-password/code", {"username": "jane", "code": "ABCD2345"}, ""),
    ("/forgot-username", {"email": "jane@example.com"}, ""),
    ("/reset-password/new", {"new_password": "purple elephants juggle", "confirm_password": "purple elephants juggle"}, "reset"),
    ("report", {}, "report"),
    ("/confirm-email", {}, "email"),
    ("/support/login", {"username": "alice", "password": AGENT_PASSWORD}, ""),
    ("/support/totp", {"code": "123456"}, "agent"),
    ("/support/accounts/jane/freeze", {"verified_by": "callback", "reason": "fraud call", "ticket": "T-1", "note": "n"}, "agent"),
    ("/support/accounts/jane/email", {"verified_by": "callback", "email": "other@example.com"}, "agent"),
    ("/support/logout", {}, "agent"),
]
# Fields a form may go without: sent as a file, they are simply absent and the form goes through.
OPTIONAL_FIELDS = {"ticket", "note"}
CASES = [
    pytest.param(url, fields, needs, field, id=f"{url}:{field}")
    for url, fields, needs in FORMS
    for field in [*fields, "csrf_token"]
]


@pytest.mark.parametrize(("url", "fields", "needs", "field"), CASES)
def test_a_field_sent_as_a_file_gets_the_friendly_page_not_a_500(
    app: Flask, client: FlaskClient, smtp: SmtpSink, make_account: Callable[..., Account],
    make_key: Callable[[str], dict[str, str]], make_agent: Callable[..., None],  # noqa: F811
    url: str, fields: dict[str, str], needs: str, field: str,
) -> None:
    make_account()
    make_agent("alice")
    if needs == "reset":
        customer_reset_session(app, client, smtp)
    elif needs == "report":
        url = report_page(app, client, smtp)
    elif needs == "email":
        email_confirmation(app, client, smtp, make_key("agent"))
    elif needs == "agent":
        signed_in_agent(client)
    form_page = client.get("/support" if url == "/support/logout" else url)
    assert form_page.status_code == 200, form_page.get_data(as_text=True)[:2000]
    data: dict[str, Any] = {"csrf_token": csrf_token_in(form_page.get_data(as_text=True)), **fields}
    data[field] = as_file(str(data[field]))
    response = client.post(url, data=data, content_type="multipart/form-data")
    if field in OPTIONAL_FIELDS:
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    else:
        assert_friendly_refusal(response)


def test_every_form_of_the_service_reads_text_fields_only() -> None:
    # A new form that derives from FlaskForm directly would bind files again.
    direct = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            named = [base.id for base in getattr(node, "bases", []) if isinstance(base, ast.Name)]
            if isinstance(node, ast.ClassDef) and "FlaskForm" in named and node.name != "TextForm":
                direct.append(f"{path.relative_to(ROOT)}:{node.name}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "FlaskForm":
                direct.append(f"{path.relative_to(ROOT)}:{node.lineno} FlaskForm()")
    assert direct == []


@pytest.mark.parametrize("body", ['{"username": 5}', '{"username": ["jane"]}', '"jane"', "[1, 2]"])
def test_a_json_body_posted_to_a_form_is_no_form_data_either(client: FlaskClient, body: str) -> None:
    token = csrf_token_in(client.get("/reset-password").get_data(as_text=True))
    response = client.post(
        "/reset-password", data=body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert_friendly_refusal(response)
    assert "Enter your username." in response.get_data(as_text=True)
