"""Emails: rendered from templates (text and HTML), and handed to SMTP or to the log."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr, make_msgid, parseaddr
from typing import Any
from urllib.parse import urljoin, urlsplit

import flask_mail
from flask import current_app, render_template

from service.contact.hours import contact_details
from service.platform.config import settings
from service.platform.i18n import speaking

log = logging.getLogger("service.mail")


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
    template: str, subject: str, *, now: datetime, language: str | None = None, **context: Any
) -> RenderedEmail:
    """Render `mail/<template>.txt` and `.html` in `language` (English when unknown), each
    ending with the customer-service details as they stand at `now`. `subject` may be a lazy
    translation. The HTML extends the one layout, `mail/_layout.html`."""
    with speaking(language):
        subject = str(subject)
        context = {"contact": contact_details(now), "subject": subject, "brand": mail_brand(settings()), **context}
        return RenderedEmail(
            subject=subject,
            text_body=render_template(f"mail/{template}.txt", **context),
            html_body=render_template(f"mail/{template}.html", **context),
        )


class TimedConnection(flask_mail.Connection):
    """Flask-Mail's connection with a socket timeout, so a silent server cannot hang a worker."""

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        server = self.mail
        timeout = settings()["MAIL_TIMEOUT"]
        smtp_class = smtplib.SMTP_SSL if server.use_ssl else smtplib.SMTP
        host = smtp_class(server.server, server.port, timeout=timeout)
        try:
            if server.use_tls:
                host.starttls()
            if server.username and server.password:
                host.login(server.username, server.password)
        except (smtplib.SMTPException, OSError):
            host.close()
            raise
        return host


def smtp_configured() -> bool:
    """Whether mail goes to an SMTP server; without one it is written to the log."""
    return bool(settings()["MAIL_SERVER"])


def sender_address(shop_name: str, sender: str) -> str:
    """`Shop Name <address>`: the shop's name shown as the sender, whatever the setting names."""
    _name, address = parseaddr(sender)
    return formataddr((shop_name, address or sender))


def build_message(recipient: str, subject: str, text_body: str, html_body: str | None) -> flask_mail.Message:
    """The MIME message for one email, from the shop's sender, with a Message-ID on its host."""
    config = settings()
    message = flask_mail.Message(
        subject=subject,
        recipients=[recipient],
        body=text_body,
        html=html_body,
        sender=sender_address(config["SHOP_NAME"], config["MAIL_DEFAULT_SENDER"]),
    )
    # Spam filters and people alike trust a Message-ID on the shop's own host more than one
    # naming whatever machine the worker runs on.
    message.msgId = make_msgid(domain=urlsplit(config["PUBLIC_BASE_URL"]).hostname or "localhost")
    return message


class Courier:
    """Sends emails over one SMTP connection kept open for a pass over the outbox.

    Opening a connection (TCP, EHLO, STARTTLS, AUTH) costs more than sending a message, so a
    worker sends a whole batch over one. After any error the connection is dropped and the
    next message opens a fresh one; a server that hung up between messages is retried once.
    """

    def __init__(self) -> None:
        self._connection: TimedConnection | None = None

    def send(self, recipient: str, subject: str, text_body: str, html_body: str | None) -> None:
        """Deliver one email now; raises what went wrong for the outbox to retry."""
        if not smtp_configured():
            log.info("mail (no MAIL_SERVER, written to the log) subject=%s\n%s", subject, text_body)
            return
        message = build_message(recipient, subject, text_body, html_body)
        reused = self._connection is not None
        try:
            self._open().send(message)
        except smtplib.SMTPServerDisconnected:
            self.close()
            if not reused:
                raise
            # The server closed an idle connection: one fresh attempt before counting a failure.
            self._open().send(message)
        except Exception:
            self.close()
            raise

    def _open(self) -> TimedConnection:
        if self._connection is None:
            connection = TimedConnection(current_app.extensions["mail"])
            connection.__enter__()
            self._connection = connection
        return self._connection

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
