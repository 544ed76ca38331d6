""""This wasn't me": what posting the report page does. From a reset mail it ends the
account's pending resets; from a password-changed notice it also freezes the account until an
agent unfreezes it."""

from __future__ import annotations

from datetime import datetime

from flask_babel import gettext as _

from service.accounts.changes import revoke_pending_resets
from service.accounts.freezing import freeze_account
from service.accounts.reportlinks import FROM_CHANGE, Report
from service.events import audit
from service.models import Account
from service.platform.database import DbSession
from service.platform.errors import TokenInvalid


def report_not_me(session: DbSession, report: Report, *, ip: str | None, now: datetime) -> Account:
    """Act on a report; flushes, the caller commits.

    Pending resets die either way; a reported password change also freezes the account,
    since whoever changed it may be signed in with it now.
    """
    account = session.get(Account, report.account_id)
    if account is None:
        raise TokenInvalid(_("This link is not valid. If something is wrong with your account, call customer service."))
    revoke_pending_resets(session, account, now)
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
