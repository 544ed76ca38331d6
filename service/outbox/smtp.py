"""The SMTP conversation for one message: smtplib's, with a deadline on every answer, the
envelope pipelined where the server offers it, and a lost last answer told apart."""

from __future__ import annotations

import io
import re
import smtplib
import socket
import time
from typing import Any

# A body line starting with a dot, which SMTP's DATA doubles (RFC 5321, 4.5.2).
LEADING_DOT = re.compile(rb"(?m)^\.")


class AnswerLost(smtplib.SMTPServerDisconnected):
    """The connection ended after the whole message went out and before the server said
    whether it took it. It may have: sending it again at once, as after an idle connection's
    hang-up, could deliver it twice (RFC 5321, 6.1)."""


class _ReplyReader(io.RawIOBase):
    """What smtplib reads answers from: the socket, with a deadline for the whole answer.

    smtplib's timeout bounds each read alone, and an answer may run to any number of lines:
    a server that sent a continuation line every few seconds kept a worker waiting for ever,
    and a stop with it. Every read here waits at most until the answer's deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = float("inf")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the SMTP server's answer did not end in time")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class _AnswerDeadline:
    """Each answer (every line of it) must arrive within the connection's timeout."""

    sock: socket.socket | None
    file: Any
    timeout: float

    def getreply(self) -> tuple[int, bytes]:
        if self.sock is not None and not isinstance(getattr(self.file, "raw", None), _ReplyReader):
            # A new socket (connected, or wrapped by STARTTLS): read it through the deadline.
            self.file = io.BufferedReader(_ReplyReader(self.sock))
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        if self.file is not None and timeout is not None:
            self.file.raw.deadline = time.monotonic() + timeout
        try:
            return super().getreply()  # type: ignore[misc, no-any-return]
        finally:
            # Writes keep the plain timeout, whatever the last read left on the socket.
            if self.sock is not None:
                self.sock.settimeout(timeout)


class DeadlineSMTP(_AnswerDeadline, smtplib.SMTP):
    """smtplib.SMTP whose every answer has a deadline."""


class DeadlineSMTP_SSL(_AnswerDeadline, smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL whose every answer has a deadline."""


def hand_over(host: smtplib.SMTP, envelope_from: str, envelope_to: str, message: bytes) -> None:
    """One message's SMTP transaction (MAIL, RCPT, DATA) on an open connection; raises the
    smtplib error `sendmail` would, or AnswerLost. The addresses are already in their envelope
    form, so sendmail's parsing of each again is skipped.

    A server that offers PIPELINING (RFC 2920; Postfix, Exim and the mail services do) gets
    MAIL, RCPT and DATA in one write and answers them together: two waits for the server a
    message instead of four, which on a fast server is most of a delivery's time, on both sides.
    """
    host.ehlo_or_helo_if_needed()
    if host.has_extn("pipelining"):
        _pipelined_envelope(host, envelope_from, envelope_to)
    else:
        _envelope(host, envelope_from, envelope_to)
    # As smtplib's `data` sends a body: a leading dot doubled, ended by a line holding one dot.
    body = LEADING_DOT.sub(b"..", message)
    host.send(body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"))
    try:
        code, answer = host.getreply()
    except smtplib.SMTPServerDisconnected as lost:
        raise AnswerLost(str(lost)) from lost
    if code != 250:
        raise smtplib.SMTPDataError(code, answer)


def _envelope(host: smtplib.SMTP, envelope_from: str, envelope_to: str) -> None:
    """MAIL, RCPT and DATA one at a time, each answer awaited."""
    code, answer = host.docmd("mail", f"FROM:<{envelope_from}>")
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, answer, envelope_from)
    code, answer = host.docmd("rcpt", f"TO:<{envelope_to}>")
    if code not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({envelope_to: (code, answer)})
    code, answer = host.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, answer)


def _pipelined_envelope(host: smtplib.SMTP, envelope_from: str, envelope_to: str) -> None:
    """MAIL, RCPT and DATA in one write, then their three answers."""
    if "\r" in envelope_from + envelope_to or "\n" in envelope_from + envelope_to:
        # smtplib's own commands refuse a line break; this write must too.
        raise ValueError("a line break in an envelope address")
    host.send(f"MAIL FROM:<{envelope_from}>\r\nRCPT TO:<{envelope_to}>\r\nDATA\r\n".encode(host.command_encoding))
    mail_reply, rcpt_reply, data_reply = host.getreply(), host.getreply(), host.getreply()
    if data_reply[0] == 354 and (mail_reply[0] != 250 or rcpt_reply[0] not in (250, 251)):
        # A server may open DATA though it refused the envelope; an empty body closes it and
        # delivers nothing, and the connection stays in step for the next message.
        host.send(b".\r\n")
        host.getreply()
    if mail_reply[0] != 250:
        raise smtplib.SMTPSenderRefused(*mail_reply, envelope_from)
    if rcpt_reply[0] not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({envelope_to: rcpt_reply})
    if data_reply[0] != 354:
        raise smtplib.SMTPDataError(*data_reply)


def failure_text(error: BaseException, recipient: str | None = None) -> str:
    """What a failed attempt records of its error: its kind and the server's answer, never the
    recipient's address (the row is kept for months). smtplib puts the address in a refusal's
    text, and relays quote it in their answers (Postfix: `<who@example.com>: Recipient address
    rejected`): `recipient` is written as `(the recipient)` wherever it stands."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = "; ".join(f"{code} {_text(answer)}" for code, answer in error.recipients.values())
        text = f"{type(error).__name__}: {answers}"
    elif isinstance(error, smtplib.SMTPSenderRefused | smtplib.SMTPResponseException):
        text = f"{type(error).__name__}: {error.smtp_code} {_text(error.smtp_error)}"
    else:
        text = f"{type(error).__name__}: {error}"
    if recipient:
        text = re.sub(re.escape(recipient), "(the recipient)", text, flags=re.IGNORECASE)
    return text


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
