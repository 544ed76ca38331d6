"""Reset codes: the short code beside every reset link, typed by hand where a link cannot be
opened (a mail read on the phone, the shop open on the PC), and setting a new password with it.

A code is found by the account's username and the code's keyed hash. A wrong code is counted
against the account's pending link reset whose code starts with the same letters (its
selector); after `policy.code_attempts` of them that reset dies, link and code alike, so a code
cannot be guessed. A stranger who knows only the username does not know how the customer's
codes start: wrong codes from them almost never land on a real reset, so they cannot kill the
links in the customer's mailbox. A wrong code that does start like a pending reset's is written
down (a durable commit), so it answers a little later than one that does not; the per-username
limit (RATELIMIT_CODE_PER_USERNAME) keeps the tries that could tell the two apart to a few an
hour, against 961 ways to start. Resets issued before selectors have none, and every wrong code
counts against them.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import bindparam, case, literal_column, or_, select, update

from service.models import Account, PasswordReset, ResetMethod
from service.platform.database import DbSession
from service.platform.errors import TokenExpired, TokenInvalid, TokenUsed
from service.platform.signing import keyed_hash, keyed_hashes
from service.platform.text import USERNAME_MAX_LENGTH, is_storable, normalise_username
from service.resets.policy import ResetPolicy

# No 0/O, 1/I/L: a code is read off a phone and typed by hand, in any case.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 10  # about 50 bits, with a handful of attempts per reset
CODE_MAX_LENGTH = 64
# The first letters say which of an account's pending resets a code is meant for: 961 values,
# of which an account has a few pending at most. The other eight letters stay the secret.
SELECTOR_LENGTH = 2

_accounts = Account.__table__.c
# One statement and one row for every name: the account's id, or NULL from the outer join of a
# one-row probe. No ORM object either way, so a wrong code for an existing name costs what one
# for a missing name does (bench/README.md, the code form's timing).
_FIND_ACCOUNT_ID = select(_accounts.id).select_from(
    select(literal_column("1").label("one"))
    .subquery("probe")
    .outerjoin(Account.__table__, _accounts.username_key == bindparam("username_key"))
)


class CodeRejected(TokenInvalid):
    """A wrong code, or a username without one: the attempt was counted, and the caller
    commits that count before answering, exactly as for any invalid token."""


def new_code() -> str:
    """A fresh code from an alphabet without look-alikes."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normal_code(typed: str) -> str:
    """The code as stored: what was typed without spaces or dashes, in capitals."""
    return "".join(char for char in typed.upper() if char not in " -\t")[:CODE_MAX_LENGTH]


def code_selector(code: str) -> str:
    """What a reset keeps of its code's first letters: a keyed hash, like the code's own."""
    return keyed_hash(_selector_text(code))


def _selector_text(code: str) -> str:
    return "code-selector:" + normal_code(code)[:SELECTOR_LENGTH]


def display_code(code: str) -> str:
    """`ABCDE-FGHJK`: two groups are easier to read out and type."""
    middle = len(code) // 2
    return f"{code[:middle]}-{code[middle:]}"


def check_code(
    session: DbSession, username: str, code: str, *, policy: ResetPolicy, now: datetime
) -> PasswordReset:
    """The pending reset a username and code stand for; flushes the count of a wrong code.

    A missing username, a wrong code and a dead reset's code all raise CodeRejected (or
    TokenExpired / TokenUsed for a known code), after the same statements, so neither the
    answer nor its time tells anything about the username.
    """
    account_id = _account_id(session, username) or 0
    reset = session.scalar(
        select(PasswordReset)
        .where(
            PasswordReset.account_id == account_id,
            PasswordReset.method == ResetMethod.LINK,
            PasswordReset.code_hash.in_(keyed_hashes(normal_code(code))),
        )
        .order_by(PasswordReset.id.desc())
        .limit(1)
    )
    if reset is None:
        _count_wrong_code(session, account_id, code, policy=policy, now=now)
        raise CodeRejected(_("This code is not valid. Check the username and the code, or ask for a new email."))
    if reset.used_at is not None:
        raise TokenUsed(_("This code has already been used. Ask for a new one if you need it."))
    if reset.revoked_at is not None and killed_by_wrong_codes(reset, policy):
        raise TokenInvalid(_("Too many wrong codes were tried for this reset, so its link and code no longer work. Ask for a new reset."))
    if reset.revoked_at is not None:
        raise TokenInvalid(_("This code no longer works: the password has changed since, or it was replaced by a newer one. Ask for a new one."))
    if reset.expires_at <= now:
        raise TokenExpired(_("This code has expired. Ask for a new one."))
    account = reset.account
    if not account.is_active or account.is_frozen or (
        account.password_changed_at and account.password_changed_at > reset.created_at
    ):
        raise TokenInvalid(_("This code is not valid. Check the username and the code, or ask for a new email."))
    return reset


def _account_id(session: DbSession, username: str) -> int | None:
    # Cut before normalising, as the per-username limit keys the name (submitted_username):
    # otherwise padding in front of a name would count under another key and still reach it.
    key = normalise_username(username[:USERNAME_MAX_LENGTH])
    if not is_storable(key):
        # No username holds such characters, and the database would refuse the query.
        return None
    account_id: int | None = session.execute(_FIND_ACCOUNT_ID, {"username_key": key}).scalar_one()
    return account_id


def killed_by_wrong_codes(reset: PasswordReset, policy: ResetPolicy) -> bool:
    """Whether a revoked reset died of wrong codes: its count stops at the limit, since only a
    usable reset counts one more, and the one that reaches the limit revokes it."""
    return reset.code_attempts >= policy.code_attempts


def _count_wrong_code(session: DbSession, account_id: int, code: str, *, policy: ResetPolicy, now: datetime) -> None:
    """One more wrong code on the account's pending link resets whose code starts like this one
    (and on those issued before selectors); the last allowed kills them.

    One conditional UPDATE: simultaneous wrong codes cannot both slip under the limit.
    """
    session.execute(
        update(PasswordReset)
        .where(
            PasswordReset.account_id == account_id,
            PasswordReset.method == ResetMethod.LINK,
            PasswordReset.code_hash.is_not(None),
            or_(
                PasswordReset.code_selector.in_(keyed_hashes(_selector_text(code))),
                PasswordReset.code_selector.is_(None),
            ),
            PasswordReset.usable_at(now),
        )
        .values(
            code_attempts=PasswordReset.code_attempts + 1,
            revoked_at=case((PasswordReset.code_attempts + 1 >= policy.code_attempts, now), else_=None),
        )
        .execution_options(synchronize_session=False)
    )
