"""Mail people trust: the shop's name as the sender, a Message-ID on the public host."""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parseaddr
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.models import Account
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import html_of, text_of


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {
        **smtp_settings(smtp), "PUBLIC_BASE_URL": "https://account.example.com",
        "MAIL_DEFAULT_SENDER": "noreply@example.com", "SHOP_NAME": "Canadian Insulin",
    }


def test_reset_mail_has_text_and_html_the_shops_name_as_sender_and_a_public_message_id(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    assert client.post("/api/v1/password-resets", json={"username": "jane"}).status_code == 202
    run_dispatcher(app)
    [mail] = smtp.to("jane@example.com")
    assert parseaddr(mail["From"]) == ("Canadian Insulin", "noreply@example.com")
    assert mail["Message-ID"].rstrip(">").endswith("@account.example.com")
    assert text_of(mail) and html_of(mail)
