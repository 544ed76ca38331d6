"""Emails: rendered from templates (text and HTML), and handed to SMTP or to the log."""

from __future__ import annotations

import binascii
import logging
import re
import secrets
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit

import flask_mail
from flask import current_app, render_template
from flask_mail import BadHeaderError, sanitize_address, sanitize_subject
from markupsafe import escape

from service.contact.hours import contact_details
from service.outbox.smtp import AnswerLost, DeadlineSMTP, DeadlineSMTP_SSL, hand_over
from service.platform.config import settings
from service.platform.i18n import current_language, speaking

log = logging.getLogger("service.mail")

# RFC 5322's limit on a line, without its CRLF: a longer one goes quoted-printable.
MAX_7BIT_LINE = 998
# An ASCII address with nothing a header would quote or encode: written as it is.
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


@dataclass(frozen=True)
class MailBrand:
    """What the HTML layout shows of the shop: its name, its logo, its colour and a text colour
    that stays readable on it."""

    name: str
    logo: str
    accent: str
    on_accent: str


def relative_luminance(colour: str) -> float:
    """WCAG 2's relative luminance of a `#rgb` or `#rrggbb` colour."""
    value = colour.lstrip("#")
    if len(value) == 3:
        value = "".join(digit * 2 for digit in value)
    channels = [int(value[start:start + 2], 16) / 255 for start in (0, 2, 4)]
    red, green, blue = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def readable_on(background: str) -> str:
    """Black or white, whichever contrasts more with `background`: one of them always reaches
    4.5:1 (WCAG AA for text), whatever colour the shop picked."""
    luminance = relative_luminance(background)
    on_white = 1.05 / (luminance + 0.05)
    on_black = (luminance + 0.05) / 0.05
    return "#ffffff" if on_white >= on_black else "#000000"


def mail_brand(config: Mapping[str, Any]) -> MailBrand:
    """The shop as its mail shows it. A logo given as a path on this site becomes an address on
    the public host: a mail is read far from the site."""
    logo = config["LOGO_URL"]
    accent = config["PRIMARY_COLOUR"].lower()
    return MailBrand(
        name=config["SHOP_NAME"],
        logo=urljoin(config["PUBLIC_BASE_URL"] + "/", logo) if logo else "",
        accent=accent,
        on_accent=readable_on(accent),
    )


@dataclass(frozen=True)
class RenderedEmail:
    """An email ready to queue."""

    subject: str
    text_body: str
    html_body: str


def render_email(
    template: str,
    subject: str,
    *,
    now: datetime,
    language: str | None = None,
    slots: Mapping[str, str] | None = None,
    **context: Any,
) -> RenderedEmail:
    """Render `mail/<template>.txt` and `.html` in `language` (English when unknown), each
    ending with the customer-service details as they stand at `now`. `subject` may be a lazy
    translation. The HTML extends the one layout, `mail/_layout.html`.

    `slots` are the values that change from one message to the next (a link, a code, a name):
    with them, the templates run once per form (template, language, the other values, the
    shop's settings, the minute) with a marker for each slot, and every later message of that
    form is the form with its values put in, escaped for the HTML part as Jinja would. The
    dispatcher writes one such mail for every reset request, and running the templates is most
    of a mail's cost. The context must then hold only values that are the same for many mails.
    """
    with speaking(language):
        subject = str(subject)
        if slots is None:
            return _render(template, subject, now, context)
        form = _mail_form(template, subject, now, context, tuple(slots))
        if form is None:
            return _render(template, subject, now, {**context, **slots})
        return form.fill(slots)


def _render(template: str, subject: str, now: datetime, context: Mapping[str, Any]) -> RenderedEmail:
    context = {"contact": contact_details(now), "subject": subject, "brand": mail_brand(settings()), **context}
    return RenderedEmail(
        subject=subject,
        text_body=render_template(f"mail/{template}.txt", **context),
        html_body=render_template(f"mail/{template}.html", **context),
    )


# A slot's marker: a name between two unit separators, which no template or translation holds,
# and which HTML escaping leaves as it is.
SLOT_MARK = "\x1f"
MAIL_FORMS_KEPT = 256
# What in the settings a mail's text depends on, besides its own values.
MAIL_SETTINGS = (
    "SHOP_NAME", "LOGO_URL", "PRIMARY_COLOUR", "PUBLIC_BASE_URL", "CONTACT_EMAIL", "CONTACT_PHONE", "CONTACT_FAX",
    "CONTACT_HOURS", "CONTACT_TIMEZONE",
)


@dataclass(frozen=True)
class MailForm:
    """A mail rendered with markers for its slots, split at them: literal text at even
    positions, a slot's name at odd ones."""

    subject: str
    text_parts: tuple[str, ...]
    html_parts: tuple[str, ...]

    def fill(self, slots: Mapping[str, str]) -> RenderedEmail:
        text = list(self.text_parts)
        for position in range(1, len(text), 2):
            text[position] = slots[text[position]]
        html = list(self.html_parts)
        for position in range(1, len(html), 2):
            html[position] = escape(slots[html[position]])
        return RenderedEmail(subject=self.subject, text_body="".join(text), html_body="".join(html))


def _split_at_slots(rendered: str, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The rendering cut at its markers, or None if a marker is missing or a name unknown (the
    mail is then rendered in full, as without slots)."""
    parts = tuple(rendered.split(SLOT_MARK))
    if len(parts) % 2 == 0 or not set(parts[1::2]) <= set(names):
        return None
    return parts


def _mail_form(
    template: str, subject: str, now: datetime, context: Mapping[str, Any], names: tuple[str, ...]
) -> MailForm | None:
    """The form for this template, language, context and minute, rendered on first use; None
    when the context holds a value that cannot be part of a key."""
    config = current_app.config
    try:
        key = (
            template, current_language(), subject, names, frozenset(context.items()),
            tuple(config[name] for name in MAIL_SETTINGS),
            # The contact details a mail shows change at most at a minute's turn (a time zone's
            # abbreviation, at a change of summer time).
            now.replace(second=0, microsecond=0),
        )
        forms = _forms()
        if key in forms:
            return forms[key]
    except TypeError:
        return None
    markers = {name: f"{SLOT_MARK}{name}{SLOT_MARK}" for name in names}
    rendered = _render(template, subject, now, {**context, **markers})
    text_parts = _split_at_slots(rendered.text_body, names)
    html_parts = _split_at_slots(rendered.html_body, names)
    form = MailForm(subject, text_parts, html_parts) if text_parts and html_parts else None
    if len(forms) >= MAIL_FORMS_KEPT:
        forms.clear()
    forms[key] = form
    return form


def _forms() -> dict[Any, MailForm | None]:
    """This app's rendered forms (an app's templates and translations are its own)."""
    forms: dict[Any, MailForm | None] = current_app.extensions.setdefault("resetdesk.mail_forms", {})
    return forms


class TimedConnection(flask_mail.Connection):
    """Flask-Mail's connection with a deadline on every answer (MAIL_TIMEOUT), so a silent or
    dawdling server cannot hang a worker."""

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        server = self.mail
        timeout = settings()["MAIL_TIMEOUT"]
        # The server's certificate is checked against the system's trusted authorities and
        # MAIL_SERVER's name: smtplib's own default checks nothing, and whoever sat between
        # the worker and the relay would read every reset link. A relay under a private
        # authority is trusted through OpenSSL's SSL_CERT_FILE / SSL_CERT_DIR.
        tls = ssl.create_default_context()
        if server.use_ssl:
            host: smtplib.SMTP = DeadlineSMTP_SSL(server.server, server.port, timeout=timeout, context=tls)
        else:
            host = DeadlineSMTP(server.server, server.port, timeout=timeout)
        try:
            if server.use_tls:
                host.starttls(context=tls)
            if server.username and server.password:
                host.login(server.username, server.password)
        except (smtplib.SMTPException, OSError):
            host.close()
            raise
        return host


def smtp_configured() -> bool:
    """Whether mail goes to an SMTP server; without one it is written to the log."""
    return bool(settings()["MAIL_SERVER"])


@lru_cache(maxsize=8)
def sender_address(shop_name: str, sender: str) -> str:
    """`Shop Name <address>`: the shop's name shown as the sender, whatever the setting names."""
    _name, address = parseaddr(sender)
    return formataddr((shop_name, address or sender))


def envelope(sender: str, recipient: str) -> tuple[str, str]:
    """The SMTP envelope's sender and recipient, as Flask-Mail writes addresses (IDN domains
    in their ASCII form); BadHeaderError for a line break in either."""
    if _has_line_break(sender) or _has_line_break(recipient):
        raise BadHeaderError
    return _address_of(sender), _header_address(recipient)


@lru_cache(maxsize=8)
def _address_of(sender: str) -> str:
    # The sender is a setting: the same for every message, parsed once.
    return parseaddr(sanitize_address(sender))[1]


def _header_address(address: str) -> str:
    """An address as a header and the envelope carry it; the parser only for an unusual one."""
    if PLAIN_ADDRESS.fullmatch(address):
        return address
    return sanitize_address(address)


def mime_bytes(
    sender: str, recipient: str, subject: str, text_body: str, html_body: str | None, *, message_id: str
) -> bytes:
    """One email as SMTP sends it: text, and HTML as its alternative, in UTF-8, lines ending in CRLF.

    Written directly rather than through the email package's generator, which parses every
    header back with its header registry and made up more than a third of a delivery's CPU.
    `sender` is a From header's value (`sender_address`'s); the other headers are those
    Flask-Mail wrote (encoded words for a non-ASCII subject, IDN domains in ASCII). A body in
    plain ASCII goes as 7bit, any other as quoted-printable.
    """
    if _has_line_break(sender) or _has_line_break(recipient) or _has_line_break(subject):
        raise BadHeaderError
    headers = (
        f"From: {sender}\n"
        f"To: {_header_address(recipient)}\n"
        f"Subject: {sanitize_subject(subject)}\n"
        f"Date: {formatdate(localtime=True)}\n"
        f"Message-ID: {message_id}\n"
        "MIME-Version: 1.0\n"
    )
    if html_body is None:
        text = headers + _mime_part("plain", text_body)
    else:
        boundary = f"=_{secrets.token_hex(16)}"
        text = (
            f'{headers}Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
            f"--{boundary}\n{_mime_part('plain', text_body)}\n"
            f"--{boundary}\n{_mime_part('html', html_body)}\n"
            f"--{boundary}--\n"
        )
    return text.replace("\n", "\r\n").encode("ascii")


def _has_line_break(value: str) -> bool:
    return "\n" in value or "\r" in value


def _mime_part(subtype: str, body: str) -> str:
    """A text part's headers and its body, 7bit when ASCII in short lines, else quoted-printable."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n")
    if lines.isascii() and max(map(len, lines.split("\n"))) <= MAX_7BIT_LINE:
        encoding, encoded = "7bit", lines
    else:
        encoding = "quoted-printable"
        encoded = binascii.b2a_qp(lines.encode("utf-8"), istext=True).decode("ascii")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\n'
        f"Content-Transfer-Encoding: {encoding}\n\n"
        f"{encoded}{'' if encoded.endswith(chr(10)) else chr(10)}"
    )


class Courier:
    """Sends emails over one SMTP connection kept open for a pass over the outbox.

    Opening a connection (TCP, EHLO, STARTTLS, AUTH) costs more than sending a message, so a
    worker sends a whole batch over one. After any error the connection is dropped and the
    next message opens a fresh one; a server that hung up between messages is retried once,
    unless the message had all gone out (AnswerLost).
    """

    def __init__(self) -> None:
        self._connection: TimedConnection | None = None

    def send(self, recipient: str, subject: str, text_body: str, html_body: str | None) -> None:
        """Deliver one email now; raises what went wrong for the outbox to retry."""
        if not smtp_configured():
            log.info("mail (no MAIL_SERVER, written to the log) subject=%s\n%s", subject, text_body)
            return
        config = settings()
        sender = sender_address(config["SHOP_NAME"], config["MAIL_DEFAULT_SENDER"])
        envelope_from, envelope_to = envelope(sender, recipient)
        # Spam filters and people alike trust a Message-ID on the shop's own host more than one
        # naming whatever machine the worker runs on.
        message_id = make_msgid(domain=urlsplit(config["PUBLIC_BASE_URL"]).hostname or "localhost")
        message = mime_bytes(sender, recipient, subject, text_body, html_body, message_id=message_id)
        reused = self._connection is not None
        try:
            try:
                hand_over(self._open(), envelope_from, envelope_to, message)
            except AnswerLost:
                # The server may have the message: no second try now (it would be delivered
                # twice); the outbox tries again later, as after any failure.
                raise
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The server closed an idle connection: one fresh attempt before counting a failure.
                self.close()
                hand_over(self._open(), envelope_from, envelope_to, message)
        except Exception:
            self.close()
            raise

    def _open(self) -> smtplib.SMTP:
        if self._connection is None:
            connection = TimedConnection(current_app.extensions["mail"])
            connection.__enter__()
            self._connection = connection
        if self._connection.host is None:
            raise smtplib.SMTPServerDisconnected("no SMTP connection")
        return self._connection.host

    def close(self) -> None:
        """Say goodbye to the server, if a connection is open."""
        connection, self._connection = self._connection, None
        if connection is not None and connection.host is not None:
            try:
                connection.host.quit()
            except (smtplib.SMTPException, OSError):
                connection.host.close()


def transmit(recipient: str, subject: str, text_body: str, html_body: str | None) -> None:
    """Deliver one email over a connection of its own; raises what went wrong."""
    courier = Courier()
    try:
        courier.send(recipient, subject, text_body, html_body)
    finally:
        courier.close()
