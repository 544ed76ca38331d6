"""What a browser does with the service's forms and mail: read the CSRF token, post a form,
pull a reset link's token out of an email."""

from __future__ import annotations

import re
from email.message import EmailMessage

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

CSRF_VALUE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token_in(html: str) -> str:
    """The CSRF token of the (first) form on a page."""
    match = CSRF_VALUE.search(html)
    assert match, html
    return match.group(1)


def post_form(
    client: FlaskClient, url: str, fields: dict[str, str], headers: dict[str, str] | None = None
) -> TestResponse:
    """Fetch the form for its CSRF token, then post it with the fields, as a browser does."""
    form = client.get(url, headers=headers or {})
    assert form.status_code == 200, form.get_data(as_text=True)
    token = csrf_token_in(form.get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **fields}, headers=headers or {})


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def link_token_in(message: EmailMessage, base_url: str) -> str:
    """The token of the reset link in a mail's text part; the link must start with `base_url`."""
    match = re.search(re.escape(base_url) + r"/reset-password/(\S+)", text_of(message))
    assert match, text_of(message)
    return match.group(1)
