"""Every mail the service sends, rendered by its real templates (and, for resets, by the real
composing function) from sample values, with what its HTML must link to and set apart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask_babel import lazy_gettext as _l

from service.accounts.changes import how_it_changed
from service.models import Account, ResetMethod
from service.outbox.mail import RenderedEmail, render_email
from service.resets.codes import display_code
from service.resets.issuing import compose_reset_email
from service.resets.policy import reset_policy

NOW = datetime(2026, 12, 1, 14, 2, tzinfo=UTC)
CODE = "ABCDEFGHJK"
TEMPORARY_PASSWORD = "Kp7wq3mzR4xv9T"
SECRET = "a-link-secret-of-the-sample"


@dataclass(frozen=True)
class SampleMail:
    """A rendered mail, the address its button must open (None: it has none), and the code or
    temporary password it must set apart (None: it carries none)."""

    email: RenderedEmail
    button_href: str | None
    secret: str | None


def sample_account(language: str = "en") -> Account:
    return Account(id=7, username="jane", username_key="jane", email="jane@example.com", language=language)


def sample_mail(name: str, language: str = "en") -> SampleMail:
    """Mail `name` (a template under templates/mail/) in `language`; needs an app context."""
    account = sample_account(language)
    policy = reset_policy()
    base = policy.base_url
    if name == "reset_link":
        email = compose_reset_email(
            account, ResetMethod.LINK, 41, SECRET, NOW + timedelta(hours=1), language, policy=policy, now=NOW, code=CODE
        )
        link = next(word for word in email.text_body.split() if word.startswith(f"{base}/reset-password/"))
        return SampleMail(email, link, display_code(CODE))
    if name == "temporary_password":
        email = compose_reset_email(
            account, ResetMethod.TEMPORARY_PASSWORD, 42, TEMPORARY_PASSWORD, NOW + timedelta(days=1), language,
            policy=policy, now=NOW,
        )
        return SampleMail(email, None, TEMPORARY_PASSWORD)
    if name == "password_changed":
        email = render_email(
            "password_changed", _l("Your password was changed"), language=language, now=NOW, account=account,
            changed_at=NOW, how=how_it_changed("reset_link", None), ip="203.0.113.9", report_link=f"{base}/report/r-token",
        )
        return SampleMail(email, None, None)
    if name == "email_confirm":
        link = f"{base}/confirm-email/c-token"
        email = render_email(
            "email_confirm", _l("Confirm your new email address"), language=language, now=NOW, account=account,
            link=link, expires_at=NOW + timedelta(days=2),
        )
        return SampleMail(email, link, None)
    if name == "sign_in_throttled":
        link = f"{base}/reset-password?username=jane"
        email = render_email(
            "sign_in_throttled", _l("Sign-in to your account is paused"), language=language, now=NOW,
            username="jane", until=NOW + timedelta(minutes=15), minutes=15, reset_link=link,
        )
        return SampleMail(email, link, None)
    if name == "username_reminder":
        email = render_email(
            "username_reminder", _l("Your usernames"), language=language, now=NOW, usernames=["jane"],
            reset_url=f"{base}/reset-password",
        )
        return SampleMail(email, f"{base}/reset-password?username=jane", None)
    if name == "email_changed":
        email = render_email(
            "email_changed", _l("Your email address was changed"), language=language, now=NOW, account=account,
            changed_at=NOW, has_new_email=True,
        )
        return SampleMail(email, None, None)
    if name == "account_closed":
        email = render_email("account_closed", _l("Your account was closed"), language=language, now=NOW)
        return SampleMail(email, None, None)
    raise ValueError(f"no sample of the mail {name!r}")


MAILS = (
    "reset_link", "temporary_password", "password_changed", "email_confirm", "sign_in_throttled",
    "username_reminder", "email_changed", "account_closed",
)
