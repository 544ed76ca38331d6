"""The bytes an email goes out as: what a mail program reads back is what was queued."""

from __future__ import annotations

from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask
from flask_mail import BadHeaderError

from service.outbox.mail import Courier, envelope, mime_bytes, sender_address
from tests.conftest import SmtpSink, smtp_settings

FRENCH_TEXT = "Bonjour,\n\nRéinitialisez votre mot de passe : https://example.com/r/abc\n.\nÀ bientôt\n"
FRENCH_HTML = "<p>Réinitialisez votre <a href=\"https://example.com/r/abc\">mot de passe</a></p>\n<p>À bientôt</p>\n"


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "SHOP_NAME": "Pharmacie Québec", "MAIL_DEFAULT_SENDER": "noreply@example.com"}


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=email_policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def test_text_and_html_come_back_as_written_with_encoded_headers() -> None:
    data = mime_bytes(
        sender_address("Pharmacie Québec", "noreply@example.com"), "jane@example.com", "Réinitialisez votre mot de passe",
        FRENCH_TEXT, FRENCH_HTML, message_id="<1.2.3@account.example.com>",
    )
    assert data.isascii()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    message = parsed(data)
    assert message["Subject"] == "Réinitialisez votre mot de passe"
    assert message["From"] == "Pharmacie Québec <noreply@example.com>"
    assert message["To"] == "jane@example.com"
    assert message["Message-ID"] == "<1.2.3@account.example.com>"
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    assert body(message, "plain") == FRENCH_TEXT
    assert body(message, "html") == FRENCH_HTML


def test_a_plain_text_mail_has_one_part_and_long_lines_survive() -> None:
    long_line = "x" * 1500
    message = parsed(mime_bytes("noreply@example.com", "jane@example.com", "Hello", f"{long_line}\nend", None, message_id="<a@b>"))
    assert message.get_content_type() == "text/plain"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert str(message.get_content()).replace("\r\n", "\n") == f"{long_line}\nend\n"
    assert max(len(line) for line in message.as_bytes().split(b"\n")) < 100


@pytest.mark.parametrize(
    ("sender", "recipient", "subject"),
    [
        ("noreply@example.com", "bad\n@example.com", "Hello"),
        ("noreply@example.com", "jane@example.com", "Hello\r\nBcc: someone@example.com"),
        ("noreply@example.com\n", "jane@example.com", "Hello"),
    ],
)
def test_a_line_break_in_a_header_is_refused(sender: str, recipient: str, subject: str) -> None:
    with pytest.raises(BadHeaderError):
        mime_bytes(sender, recipient, subject, "text", None, message_id="<a@b>")


def test_what_the_courier_sends_arrives_intact(app: Flask, smtp: SmtpSink) -> None:
    with app.app_context():
        courier = Courier()
        courier.send("jane@example.com", "Réinitialisez votre mot de passe", FRENCH_TEXT, FRENCH_HTML)
        courier.send("bob@example.com", "Hello", ".\n..\nend", None)
        courier.close()
    [french] = smtp.to("jane@example.com")
    assert french["Subject"] == "Réinitialisez votre mot de passe"
    assert french["From"] == "Pharmacie Québec <noreply@example.com>"
    assert body(french, "plain") == FRENCH_TEXT
    assert body(french, "html") == FRENCH_HTML
    [dots] = smtp.to("bob@example.com")
    assert SmtpSink.text_of(dots).replace("\r\n", "\n") == ".\n..\nend\n"


def test_an_internationalised_domain_goes_out_in_its_ascii_form() -> None:
    assert envelope(sender_address("Shop", "noreply@example.com"), "je@exämple.com") == (
        "noreply@example.com", "je@xn--exmple-cua.com",
    )
    message = parsed(mime_bytes("noreply@example.com", "je@exämple.com", "Hello", "text", None, message_id="<a@b>"))
    assert message["To"] == "je@xn--exmple-cua.com"
