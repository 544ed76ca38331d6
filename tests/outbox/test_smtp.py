"""Sending over a server that offers PIPELINING: the envelope in one write, the same mail out."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service import create_app
from service.outbox.mail import Courier
from service.outbox.smtp import AnswerLost
from tests.conftest import SmtpSink, serving, smtp_settings
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
    with serving(Refusing()) as sink:
        yield sink


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


class Conversation:
    """One connection to a ScriptedServer, from the server's side."""

    def __init__(self, connection: socket.socket, lines: list[bytes], stopping: threading.Event) -> None:
        self.connection = connection
        self.reading = connection.makefile("rb")
        self.lines = lines
        self.stopping = stopping
        self.messages = 0

    def read(self) -> bytes:
        line = self.reading.readline()
        self.lines.append(line)
        return line

    def say(self, answer: bytes) -> None:
        self.connection.sendall(answer)

    def dawdle(self, line: bytes) -> None:
        """Send `line` every 0.2 s, an answer that never ends, until the test is over."""
        while not self.stopping.wait(0.2):
            try:
                self.say(line)
            except OSError:
                return

    def serve(self, answers: dict[bytes, bytes] | None = None, *, after_body: Callable[[Conversation], bool] | None = None) -> None:
        """Answer as a server offering PIPELINING (or as `answers` says, by verb) until QUIT; after
        each body `after_body` may answer instead, and ends the connection by returning False."""
        answers = {b"EHLO": b"250-scripted\r\n250 PIPELINING\r\n", b"MAIL": b"250 OK\r\n", b"RCPT": b"250 OK\r\n",
                   b"DATA": b"354 go ahead\r\n", b"QUIT": b"221 bye\r\n", **(answers or {})}
        self.say(b"220 scripted ESMTP\r\n")
        while line := self.read():
            verb = line.split(b" ")[0].rstrip(b"\r\n").upper()
            answer = answers.get(verb, b"500 what\r\n")
            self.say(answer)
            if verb == b"QUIT":
                return
            if verb == b"DATA" and answer.startswith(b"354"):
                while self.read() not in (b".\r\n", b""):
                    pass
                self.messages += 1
                if after_body is not None and not after_body(self):
                    return
                if after_body is None:
                    self.say(b"250 accepted\r\n")


class ScriptedServer:
    """An SMTP server on loopback whose connections each follow a script (the first connection
    the first script, and so on), for answers no well-behaved server gives; it keeps every line
    each connection read."""

    def __init__(self, *scripts: Callable[[Conversation], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[list[bytes]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(scripts,), daemon=True)
        self.thread.start()

    def run(self, scripts: tuple[Callable[[Conversation], None], ...]) -> None:
        with self.listener:
            for script in scripts:
                connection, _address = self.listener.accept()
                lines: list[bytes] = []
                self.connections.append(lines)
                with connection:
                    conversation = Conversation(connection, lines, self.stopping)
                    with conversation.reading:
                        script(conversation)

    def verbs(self, connection: int) -> list[bytes]:
        return [line.split(b" ")[0].rstrip(b"\r\n").upper() for line in self.connections[connection]]

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


@pytest.fixture
def scripted(database_url: str) -> Iterator[Callable[..., tuple[ScriptedServer, Flask]]]:
    """A ScriptedServer with the scripts given, and an app that mails to it (MAIL_TIMEOUT 1 s)."""
    servers: list[ScriptedServer] = []

    def start(*scripts: Callable[[Conversation], None]) -> tuple[ScriptedServer, Flask]:
        server = ScriptedServer(*scripts)
        servers.append(server)
        return server, create_app(settings_for(database_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_TIMEOUT=1))

    yield start
    for server in servers:
        server.stop()


def sending(app: Flask, courier: Courier, recipient: str = "jane@example.com") -> BaseException | None:
    """Send one mail on `courier`, in a thread given 5 s to finish; what it raised, if anything."""
    outcome: list[BaseException | None] = []

    def send() -> None:
        with app.app_context():
            try:
                courier.send(recipient, "Your reset", TEXT, None)
                outcome.append(None)
            except Exception as error:
                outcome.append(error)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(5)
    assert outcome, "the send was still waiting for the server after 5 s"
    return outcome[0]


def test_data_opened_after_a_refused_recipient_is_closed_empty(scripted: Callable[..., tuple[ScriptedServer, Flask]]) -> None:
    server, app = scripted(lambda talk: talk.serve({b"RCPT": b"550 5.1.1 no such user\r\n", b".": b"554 5.5.1 no valid recipients\r\n"}))
    courier = Courier()
    assert isinstance(sending(app, courier, "nobody@example.com"), smtplib.SMTPRecipientsRefused)
    server.thread.join(5)
    # Nothing of the body went: DATA was answered by an empty one, in step with the server.
    assert server.verbs(0)[1:] == [b"MAIL", b"RCPT", b"DATA", b".", b"QUIT"]


@pytest.mark.parametrize("where", ["greeting", "envelope", "last answer"])
def test_an_answer_that_never_ends_gives_up_after_the_timeout(
    scripted: Callable[..., tuple[ScriptedServer, Flask]], where: str
) -> None:
    """A server that keeps sending continuation lines, each in good time, never finishing."""
    if where == "greeting":
        _server, app = scripted(lambda talk: talk.dawdle(b"220-still waking up\r\n"))
    elif where == "envelope":
        _server, app = scripted(_dawdle_at_mail)
    else:
        _server, app = scripted(lambda talk: talk.serve(after_body=lambda talk: talk.dawdle(b"250-still thinking\r\n") or False))
    started = time.monotonic()
    error = sending(app, Courier())
    assert isinstance(error, smtplib.SMTPServerDisconnected)
    assert time.monotonic() - started < 3


def _dawdle_at_mail(talk: Conversation) -> None:
    talk.say(b"220 scripted ESMTP\r\n")
    talk.read()
    talk.say(b"250-scripted\r\n250 PIPELINING\r\n")
    talk.read()
    talk.dawdle(b"250-thinking about it\r\n")


def test_a_message_whose_last_answer_is_lost_is_not_sent_again_at_once(
    scripted: Callable[..., tuple[ScriptedServer, Flask]]
) -> None:
    """The server hangs up after taking the second message's body, before saying 250: it may
    have it, so the worker must not send it again on a fresh connection straight away."""
    server, app = scripted(
        lambda talk: talk.serve(after_body=lambda talk: talk.messages < 2 and (talk.say(b"250 accepted\r\n") or True)),
        lambda talk: talk.serve(),
    )
    courier = Courier()
    try:
        assert sending(app, courier, "jane@example.com") is None
        assert isinstance(sending(app, courier, "joe@example.com"), AnswerLost)
        assert sending(app, courier, "ann@example.com") is None
    finally:
        with app.app_context():
            courier.close()
    server.thread.join(5)
    # joe's message went once, on the first connection; the second carried only ann's.
    assert server.verbs(0).count(b"MAIL") == 2
    assert server.verbs(1).count(b"MAIL") == 1


def test_a_failure_on_the_second_try_drops_that_connection_too(scripted: Callable[..., tuple[ScriptedServer, Flask]]) -> None:
    """An idle connection's hang-up is tried once more on a fresh one; when that try fails too,
    the fresh connection goes as well, so the next message does not inherit its state."""
    server, app = scripted(
        lambda talk: talk.serve(after_body=lambda talk: talk.say(b"250 accepted\r\n") or False),
        lambda talk: talk.serve({b"RCPT": b"550 5.1.1 no such user\r\n", b".": b"554 no valid recipients\r\n"}),
        lambda talk: talk.serve(),
    )
    courier = Courier()
    try:
        assert sending(app, courier, "jane@example.com") is None
        assert isinstance(sending(app, courier, "nobody@example.com"), smtplib.SMTPRecipientsRefused)
        assert sending(app, courier, "ann@example.com") is None
    finally:
        with app.app_context():
            courier.close()
    server.thread.join(5)
    assert len(server.connections) == 3
    assert server.verbs(1)[-1] == b"QUIT"


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private authority, and a certificate it signed for localhost with its key, as PEM files."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    folder = tmp_path_factory.mktemp("tls")
    authority_key = ec.generate_private_key(ec.SECP256R1())
    authority_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "resetdesk test authority")])
    usage = {name: False for name in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                                      "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")}
    authority = (
        x509.CertificateBuilder().subject_name(authority_name).issuer_name(authority_name)
        .public_key(authority_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**{**usage, "digital_signature": True, "key_cert_sign": True, "crl_sign": True}), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(authority_key.public_key()), critical=False)
        .sign(authority_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(authority_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()), critical=False)
        .sign(authority_key, hashes.SHA256())
    )
    files = {"authority": folder / "authority.pem", "certificate": folder / "localhost.pem", "key": folder / "localhost.key"}
    files["authority"].write_bytes(authority.public_bytes(serialization.Encoding.PEM))
    files["certificate"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return files


@pytest.fixture
def tls_sink(certificates: dict[str, Path], request: pytest.FixtureRequest) -> Iterator[tuple[SmtpSink, dict[str, Any]]]:
    """The sink behind TLS: STARTTLS required, or TLS from the first byte; and the settings to reach it."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certificates["certificate"], certificates["key"])
    sink = SmtpSink()
    if request.param == "starttls":
        sink.start(tls_context=server_tls, require_starttls=True)
        mail = {"MAIL_USE_TLS": True}
    else:
        sink.start(ssl_context=server_tls)
        mail = {"MAIL_USE_SSL": True}
    yield sink, {"MAIL_SERVER": "localhost", "MAIL_PORT": sink.port, "MAIL_TIMEOUT": 5, **mail}
    sink.stop()


@pytest.mark.parametrize("tls_sink", ["starttls", "tls"], indirect=True)
def test_mail_goes_over_tls_to_a_relay_whose_certificate_checks_out(
    database_url: str, tls_sink: tuple[SmtpSink, dict[str, Any]], certificates: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch, writes: list[bytes],
) -> None:
    sink, mail = tls_sink
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates["authority"]))
    send_all(create_app(settings_for(database_url, **mail)), ["jane@example.com", "joe@example.com"])

    assert [message["To"] for message in sink.messages] == ["jane@example.com", "joe@example.com"]
    assert all(text_of(message) == TEXT for message in sink.messages)
    # Pipelined inside TLS too (the EHLO after STARTTLS offers it again).
    assert len(envelopes(writes)) == 2


@pytest.mark.parametrize("tls_sink", ["starttls", "tls"], indirect=True)
def test_a_relay_whose_certificate_nobody_vouches_for_gets_no_mail(
    database_url: str, tls_sink: tuple[SmtpSink, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone between the worker and the relay, with a certificate of their own making."""
    sink, mail = tls_sink
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    app = create_app(settings_for(database_url, **mail))
    with app.app_context():
        courier = Courier()
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                courier.send("jane@example.com", "Your reset", TEXT, None)
        finally:
            courier.close()
    assert sink.messages == []
