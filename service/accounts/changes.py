"""What every password change does, by any route: the new hash, the resets it ends, the
audit event and the notice to the account's email."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from sqlalchemy import bindparam, or_, update

from service.accounts.passwords import check_new_password, hash_password
from service.accounts.reportlinks import report_token_for_change
from service.accounts.throttle import account_throttle_key, sign_in_throttle
from service.events import audit
from service.models import Account, PasswordReset
from service.outbox.mail import render_email
from service.outbox.queue import queue_email
from service.platform.config import settings
from service.platform.database import DbSession
from service.platform.i18n import LazyText, current_language, lazy_text


def replace_password_hash(
    session: DbSession,
    account: Account,
    password_hash: str,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
    via: str,
    must_change: bool = False,
    expires_at: datetime | None = None,
    reset: PasswordReset | None = None,
    notify: bool = True,
) -> None:
    """Everything a password change does, by any route; the caller commits.

    Pending reset links and temporary passwords die, the change is audited, and the
    account's email is told (unless `notify` is off: a change that another one completes in
    the same step, which sends the notice), so a change the owner did not make does not go
    unnoticed. The notice says when, how (`via`, and the `reset` used, which names the ticket
    of an agent who sent it) and from which address.
    """
    account.password_hash = password_hash
    account.password_changed_at = now
    account.must_change_password = must_change
    # Only a temporary password expires; any other change makes the password the owner's for good.
    account.password_expires_at = expires_at
    revoke_pending_resets(session, account, now)
    # Whoever now holds the password (a completed reset, by any route) is not kept out by
    # the wrong passwords that came before it.
    sign_in_throttle().unlock(account_throttle_key(account.username_key))
    audit.record_event(
        session, "password.changed", actor=actor, ip=ip, now=now, account=account, details={"via": via}
    )
    if account.email and notify:
        notice = render_email(
            "password_changed", _l("Your password was changed"),
            language=account.language or (reset.language if reset is not None else None) or current_language(), now=now,
            account=account, changed_at=now, how=how_it_changed(via, reset), ip=ip,
            report_link=f"{settings()['PUBLIC_BASE_URL']}/report/{report_token_for_change(account.id, now)}",
        )
        queue_email(session, account.email, notice, account_id=account.id, now=now)


def how_it_changed(via: str, reset: PasswordReset | None) -> LazyString | LazyText:
    """The notice's sentence on how a password was changed (translated when the mail is written)."""
    if reset is not None and reset.requested_by != audit.SELF:
        if reset.ticket:
            return lazy_text(
                "Customer service sent you a password reset (ticket %(ticket)s), and it was used to choose this password.",
                ticket=reset.ticket,
            )
        return _l("Customer service sent you a password reset, and it was used to choose this password.")
    if via == "reset_link":
        return _l("It was changed with a password-reset link sent to this address.")
    if via == "reset_code":
        return _l("It was changed with the code from a password-reset email sent to this address.")
    if via == "temporary_password":
        return _l("It was changed by signing in with a temporary password sent to this address.")
    return _l("It was changed by someone who signed in with the previous password.")


def revoke_pending_resets(
    session: DbSession,
    account: Account,
    now: datetime,
    *,
    keep_self_service: str | None = None,
    created_up_to: datetime | None = None,
) -> None:
    """End every reset link and temporary password of the account not yet used; the caller commits.

    `keep_self_service` (a method) spares the pending self-service resets of that method: a
    customer who asks again and then opens the first mail to arrive must not find it dead.
    `created_up_to` ends only the resets made by then (those a given mail can speak for).
    """
    session.execute(
        _revoke_statement(created_up_to is not None, keep_self_service is not None),
        {"revoke_account": account.id, "revoked": now, "created_up_to": created_up_to, "keep_method": keep_self_service},
    )


@cache
def _revoke_statement(up_to_a_time: bool, keeping_self_service: bool) -> Any:
    """`revoke_pending_resets`' UPDATE, built once for each combination of its conditions (a
    reset request runs it every time, and building it cost as much as running it)."""
    conditions = [
        PasswordReset.account_id == bindparam("revoke_account"),
        PasswordReset.used_at.is_(None),
        PasswordReset.revoked_at.is_(None),
    ]
    if up_to_a_time:
        conditions.append(PasswordReset.created_at <= bindparam("created_up_to", type_=PasswordReset.created_at.type))
    if keeping_self_service:
        conditions.append(
            or_(PasswordReset.requested_by != audit.SELF, PasswordReset.method != bindparam("keep_method"))
        )
    return (
        update(PasswordReset)
        .where(*conditions)
        .values(revoked_at=bindparam("revoked", type_=PasswordReset.revoked_at.type))
        .execution_options(synchronize_session=False)
    )


def set_password(
    session: DbSession,
    account: Account,
    new_password: str,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
    via: str,
    reset: PasswordReset | None = None,
    notify: bool = True,
) -> None:
    """Check the new password against the policy and set it; the caller commits."""
    check_new_password(new_password, username=account.username, email=account.email)
    replace_password_hash(
        session, account, hash_password(new_password), actor=actor, ip=ip, now=now, via=via, reset=reset,
        notify=notify,
    )
