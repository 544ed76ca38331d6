"""Sending over a server that offers PIPELINING: the envelope in one write, the same mail out."""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service import create_app
from service.outbox.mail import Courier
from tests.conftest import SmtpSink, smtp_settings
from tests.conftest import test_settings as settings_for

# A line that SMTP's DATA must dot-stuff, and one that would end the body early if it did not.
TEXT = "Dear Jane,\n.\n.hidden and then some\nYour code is 123-456.\n"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Mail alone: one database is enough."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return smtp_settings(smtp)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write the client makes to an SMTP server, as smtplib sends it."""
    sent: list[bytes] = []
    real_send = smtplib.SMTP.send

    def recording_send(self: smtplib.SMTP, data: Any) -> None:
        sent.append(data if isinstance(data, bytes) else data.encode("ascii"))
        real_send(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", recording_send)
    return sent


def send_all(app: Flask, recipients: list[str]) -> None:
    with app.app_context():
        courier = Courier()
        try:
            for recipient in recipients:
                courier.send(recipient, "Your reset", TEXT, None)
        finally:
            courier.close()


def envelopes(writes: list[bytes]) -> list[bytes]:
    """The writes that carry MAIL, RCPT or DATA (smtplib writes its own commands in lower case)."""
    return [data for data in writes if data.upper().startswith((b"MAIL FROM:", b"RCPT TO:", b"DATA\r\n"))]


def text_of(message: Any) -> str:
    return SmtpSink.text_of(message).replace("\r\n", "\n")


def test_a_pipelining_server_gets_each_envelope_in_one_write(app: Flask, smtp: SmtpSink, writes: list[bytes]) -> None:
    send_all(app, ["jane@example.com", "joe@example.com"])

    assert envelopes(writes) == [
        b"MAIL FROM:<resetdesk@localhost>\r\nRCPT TO:<jane@example.com>\r\nDATA\r\n",
        b"MAIL FROM:<resetdesk@localhost>\r\nRCPT TO:<joe@example.com>\r\nDATA\r\n",
    ]
    assert [message["To"] for message in smtp.messages] == ["jane@example.com", "joe@example.com"]
    assert all(text_of(message) == TEXT for message in smtp.messages)
    assert smtp.greetings == 1


def test_a_server_without_pipelining_gets_one_command_at_a_time(app: Flask, smtp: SmtpSink, writes: list[bytes]) -> None:
    smtp.pipelining = False
    send_all(app, ["jane@example.com"])

    assert [data.split(b":")[0].upper() for data in envelopes(writes)] == [b"MAIL FROM", b"RCPT TO", b"DATA\r\n"]
    assert [text_of(message) for message in smtp.messages] == [TEXT]


class Refusing(SmtpSink):
    """The sink, refusing a sender or a recipient by its address."""

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("blocked@"):
            return "550 5.7.1 sender blocked"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def refusing() -> Iterator[Refusing]:
    sink = Refusing()
    sink.start()
    yield sink
    sink.stop()


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refusal_raises_what_sendmail_would_and_the_next_message_goes(
    database_url: str, refusing: Refusing, pipelining: bool
) -> None:
    refusing.pipelining = pipelining
    app = create_app(settings_for(database_url, **smtp_settings(refusing)))
    with app.app_context():
        courier = Courier()
        try:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                courier.send("nobody@example.com", "Your reset", TEXT, None)
            assert refused.value.recipients == {"nobody@example.com": (550, b"5.1.1 no such user here")}
            courier.send("jane@example.com", "Your reset", TEXT, None)
        finally:
            courier.close()
        app.config["MAIL_DEFAULT_SENDER"] = "blocked@example.com"
        courier = Courier()
        try:
            with pytest.raises(smtplib.SMTPSenderRefused) as blocked:
                courier.send("jane@example.com", "Your reset", TEXT, None)
            assert (blocked.value.smtp_code, blocked.value.sender) == (550, "blocked@example.com")
        finally:
            courier.close()
    assert [(message["To"], text_of(message)) for message in refusing.messages] == [("jane@example.com", TEXT)]


class ScriptedServer:
    """A server that opens DATA even after refusing the recipient, as RFC 2920 allows a server
    to; it records every line it reads."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lines: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        connection, _address = self.listener.accept()
        self.listener.close()
        with connection, connection.makefile("rb") as reading:
            connection.sendall(b"220 scripted ESMTP\r\n")
            answers = {b"EHLO": b"250-scripted\r\n250 PIPELINING\r\n", b"MAIL": b"250 OK\r\n",
                       b"RCPT": b"550 5.1.1 no such user\r\n", b"DATA": b"354 go ahead\r\n",
                       b".": b"554 5.5.1 no valid recipients\r\n", b"QUIT": b"221 bye\r\n"}
            for line in reading:
                self.lines.append(line)
                answer = answers.get(line.split(b" ")[0].rstrip(b"\r\n").upper(), b"500 what\r\n")
                connection.sendall(answer)
                if answer.startswith(b"221"):
                    return


def test_data_opened_after_a_refused_recipient_is_closed_empty(database_url: str) -> None:
    server = ScriptedServer()
    app = create_app(settings_for(database_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_TIMEOUT=5))
    with app.app_context():
        courier = Courier()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            courier.send("nobody@example.com", "Your reset", TEXT, None)
        courier.close()
    server.thread.join(5)
    # Nothing of the body went: DATA was answered by an empty one, in step with the server.
    assert [line.split(b" ")[0].rstrip(b"\r\n").upper() for line in server.lines][1:] == [b"MAIL", b"RCPT", b"DATA", b".", b"QUIT"]
