""""This wasn't me": what posting the report page does. From a reset mail it ends the
account's pending resets made up to that mail; from a password-changed notice it also
freezes the account until an agent unfreezes it. Each link does so once (see reportlinks)."""

from __future__ import annotations

from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import or_, update

from service.accounts.changes import revoke_pending_resets
from service.accounts.freezing import freeze_account
from service.accounts.reportlinks import FROM_CHANGE, Report, already_used
from service.events import audit
from service.models import Account, PasswordReset
from service.platform.database import DbSession
from service.platform.errors import TokenInvalid


def mark_reported(session: DbSession, report: Report, now: datetime) -> bool:
    """Record that the report's link has done its work, unless it already has (or what it
    names has changed meanwhile); one statement, so two presses at once count once."""
    if report.kind == FROM_CHANGE:
        statement = (
            update(Account)
            .where(
                Account.id == report.account_id,
                Account.password_changed_at == report.changed_at,
                or_(Account.reported_change_at.is_(None), Account.reported_change_at != report.changed_at),
            )
            .values(reported_change_at=report.changed_at)
        )
    else:
        statement = (
            update(PasswordReset)
            .where(PasswordReset.id == report.reset_id, PasswordReset.reported_at.is_(None))
            .values(reported_at=now)
        )
    result = session.execute(statement.execution_options(synchronize_session="fetch"))
    return bool(getattr(result, "rowcount", 0) == 1)


def report_not_me(session: DbSession, report: Report, *, ip: str | None, now: datetime) -> Account:
    """Act on a report; flushes, the caller commits. ReportOutOfDate if its link was used meanwhile.

    A reset mail's report ends the pending resets made up to that mail (a later one, asked for
    after it, is not the mail's to stop); a reported password change ends them all and also
    freezes the account, since whoever changed it may be signed in with it now.
    """
    account = session.get(Account, report.account_id)
    if account is None:
        raise TokenInvalid(_("This link is not valid. If something is wrong with your account, call customer service."))
    if not mark_reported(session, report, now):
        raise already_used()
    revoke_pending_resets(
        session, account, now, created_up_to=None if report.kind == FROM_CHANGE else report.reset_created_at
    )
    audit.record_event(
        session, "account.reported", actor=audit.SELF, ip=ip, now=now, account=account,
        details={"from": report.kind, **({"reset_id": report.reset_id} if report.reset_id else {})},
    )
    if report.kind == FROM_CHANGE:
        freeze_account(
            session, account, reason="The customer reported a password change they did not make.",
            actor=audit.SELF, ip=ip, now=now, details={"from": "report"},
        )
    return account
