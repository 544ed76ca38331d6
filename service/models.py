"""The tables: accounts, API keys, agents and their sessions, audit events, resets, the outbox;
and the names of the values their status and kind columns take."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import DDL, BigInteger, ColumnElement, ForeignKey, Index, String, Text, and_, event, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.platform.clock import utcnow
from service.platform.modelbase import Base, UTCDateTime
from service.platform.text import digits_of, searchable

__all__ = ["Base", "UTCDateTime"]  # re-exported for migrations and tests


class AccountStatus(StrEnum):
    """Whether an account (or an agent) may sign in at all."""

    ACTIVE = "active"
    DISABLED = "disabled"
    # Closed by the customer: nothing personal left, the row kept for the audit trail.
    CLOSED = "closed"


class ApiRole(StrEnum):
    """What an API key may do; `admin` may do everything."""

    CLIENT = "client"
    AGENT = "agent"
    ADMIN = "admin"


class ResetMethod(StrEnum):
    """What a reset sends: a one-time link, or a temporary password."""

    LINK = "link"
    TEMPORARY_PASSWORD = "temporary_password"


class RequestStatus(StrEnum):
    """Where a self-service reset request stands in the dispatcher's hands."""

    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"


class RequestKind(StrEnum):
    """What a self-service request asks for: a password reset, or a reminder of usernames."""

    RESET = "reset"
    USERNAME_REMINDER = "username_reminder"


class OutboxStatus(StrEnum):
    """Where a queued message stands."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class OutboxKind(StrEnum):
    """What a queued message is: an email, or a webhook to the website."""

    EMAIL = "email"
    WEBHOOK = "webhook"


ACCOUNT_STATUSES = tuple(status.value for status in AccountStatus)
API_ROLES = tuple(role.value for role in ApiRole)
RESET_METHODS = tuple(method.value for method in ResetMethod)


class _AccountStateFields(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def frozen_at(self) -> datetime | None: ...


class AccountState:
    """What an account's status and freeze say: one rule for the mapped account and for the
    plain copies read without the ORM (a sign-in's)."""

    __slots__ = ()

    @property
    def is_active(self: _AccountStateFields) -> bool:
        return self.status == AccountStatus.ACTIVE

    @property
    def is_frozen(self: _AccountStateFields) -> bool:
        return self.frozen_at is not None


class Account(Base, AccountState):
    """A customer account of the shop, found by its normalised username."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150))
    username_key: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    email_key: Mapped[str | None] = mapped_column(String(254), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE)
    language: Mapped[str | None] = mapped_column(String(8))
    must_change_password: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime | None]
    # Frozen: no sign-in and no reset mail until an agent unfreezes it ("this wasn't me", fraud).
    frozen_at: Mapped[datetime | None]
    frozen_reason: Mapped[str | None] = mapped_column(String(200))
    # The password change (its `password_changed_at`) that a "this wasn't me" link has reported:
    # that link has done its work, and cannot freeze the account again once it is unfrozen.
    reported_change_at: Mapped[datetime | None]
    # Set while the password is a used temporary one: unchanged past this, it stops working.
    password_expires_at: Mapped[datetime | None]
    # What a customer on the phone spells out: their name and number, both optional.
    full_name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    # What support search matches "any part of": each rule that changes a name, an email or a
    # phone calls `refresh_search_columns` (creating, the profile, an email change, closing).
    search_text: Mapped[str] = mapped_column(Text, default="")
    phone_digits: Mapped[str] = mapped_column(String(40), default="")

    __table_args__ = (
        # Trigram indexes make LIKE '%part%' fast on PostgreSQL. SQLite gets plain indexes of the
        # same names (so one model describes both schemas); it scans, which suits its size.
        Index(
            "ix_accounts_search_text_trgm", "search_text",
            postgresql_using="gin", postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
        Index(
            "ix_accounts_phone_digits_trgm", "phone_digits",
            postgresql_using="gin", postgresql_ops={"phone_digits": "gin_trgm_ops"},
        ),
    )

    def refresh_search_columns(self) -> None:
        """Recompute the search forms from the username, email, full name and phone."""
        parts = (self.username, self.email, self.full_name)
        self.search_text = "\n".join(searchable(part) for part in parts if part)
        self.phone_digits = digits_of(self.phone or "")


class ApiKey(Base):
    """A key the website or a tool presents; only the SHA-256 of the key is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Agent(Base):
    """A support agent who signs in to the console."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150))
    username_key: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[datetime | None]
    # The TOTP secret, sealed (service.platform.sealing); confirmed once the agent entered a
    # first code from it. Until then it is an enrolment in progress and signs nobody in.
    totp_secret_sealed: Mapped[str | None] = mapped_column(String(512))
    totp_confirmed_at: Mapped[datetime | None]
    # The last time step whose code was accepted: a code seen once is refused after.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # A supervisor also sees the desk overview in the console; set with `agents supervisor`.
    supervisor: Mapped[bool] = mapped_column(default=False, server_default=false())


class AgentSession(Base):
    """An agent's signed-in console session; the cookie carries its random id, kept here as a hash.

    Signing out, disabling the agent, idling or the day's end ends it here, so a copied cookie
    stops working with it.
    """

    __tablename__ = "agent_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class AgentResetQuota(Base):
    """How many resets an actor (an agent, or an agent key) issued in its current hour.

    One row per actor, changed by one conditional UPDATE, so simultaneous requests cannot
    both take the last reset of the hour.
    """

    __tablename__ = "agent_reset_quotas"

    actor: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_started_at: Mapped[datetime]
    used: Mapped[int] = mapped_column(default=0)


class ResetMailQuota(Base):
    """How many self-service reset mails an account received in its current hour.

    One row per account, changed by one conditional UPDATE in the dispatcher, so however many
    requests name the account and however many dispatchers resolve them, the cap holds.
    """

    __tablename__ = "reset_mail_quotas"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    window_started_at: Mapped[datetime]
    used: Mapped[int] = mapped_column(default=0)


class AuditEvent(Base):
    """Something that happened to an account; written once, never changed."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_account_at", "account_id", "at"),
        # The desk overview counts a few types of event over a few weeks.
        Index("ix_audit_events_type_at", "type", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    type: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    actor: Mapped[str] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    account: Mapped[Account | None] = relationship()


class ResetRequest(Base):
    """A self-service "reset my password" request, before anyone looks the name up.

    The request path writes exactly this row for every username, existing or not, so that
    neither its answer nor its time can tell them apart; the dispatcher resolves it later.
    The typed name is kept only sealed (people type passwords and emails into that box).
    """

    __tablename__ = "reset_requests"
    __table_args__ = (Index("ix_reset_requests_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), default=RequestKind.RESET, server_default=RequestKind.RESET.value)
    # What was typed, sealed: a username for a reset, an email address for a reminder (each
    # kind under its own sealing purpose).
    username_sealed: Mapped[str] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.PENDING)
    processed_at: Mapped[datetime | None]
    # A request whose handling failed is retried later, like a message; these say why and when.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class PasswordReset(Base):
    """A reset link or temporary password issued to an account; its secret only as a hash."""

    __tablename__ = "password_resets"
    __table_args__ = (
        Index("ix_password_resets_account_pending", "account_id", "used_at", "revoked_at"),
        # The desk overview counts the resets used in a window of days.
        Index("ix_password_resets_used_at", "used_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    method: Mapped[str] = mapped_column(String(32))
    requested_by: Mapped[str] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # How it was used (a `via` of service.accounts.changes): `reset_link`, `reset_code` (a link's
    # reset, by the code in its mail) or `temporary_password`.
    used_via: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[datetime | None]
    # A keyed hash of what the customer types: the code beside a link, or the temporary
    # password itself; it finds the reset among several pending ones without a slow hash each.
    code_hash: Mapped[str | None] = mapped_column(String(64))
    # A keyed hash of the code's first letters (service.resets.codes): a wrong code counts
    # against the pending reset whose code starts the same, not against every one.
    code_selector: Mapped[str | None] = mapped_column(String(64))
    code_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    # The ticket an agent gave when sending the reset: the password-changed notice names it.
    ticket: Mapped[str | None] = mapped_column(String(200))
    # When the "this wasn't me" link of this reset's mail was used: it works once.
    reported_at: Mapped[datetime | None]
    # The language its mail was written in: the password-changed notice after it speaks it too,
    # for an account with no language of its own.
    language: Mapped[str | None] = mapped_column(String(8))

    account: Mapped[Account] = relationship()

    @classmethod
    def usable_at(cls, now: datetime) -> ColumnElement[bool]:
        """A reset that can still be used at `now`: neither used, nor revoked, nor expired."""
        return and_(cls.used_at.is_(None), cls.revoked_at.is_(None), cls.expires_at > now)


class EmailChange(Base):
    """A new address an agent entered for an account, waiting for its owner to confirm it.

    The account's email changes only once the link sent to the new address is followed; only
    the SHA-256 of the link's random secret is kept.
    """

    __tablename__ = "email_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    new_email: Mapped[str] = mapped_column(String(254))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship()


class OutboxMessage(Base):
    """An email or webhook waiting to be delivered, delivered, or given up on after its last retry.

    For a webhook, `recipient` is the URL, `subject` the event type and `text_body` the JSON.
    Bodies are sealed while queued (`outbox.queue.seal_body`) and dropped once sent or failed.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next_attempt", "status", "next_attempt_at"),
        # The messages still to deliver, in id order: a claim reads these, not the million sent
        # before them (without it, a backlog behind them made PostgreSQL scan every sent row).
        Index(
            "ix_outbox_unfinished", "id",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default=OutboxKind.EMAIL, server_default="email")
    recipient: Mapped[str] = mapped_column(String(2000))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))

    account: Mapped[Account | None] = relationship()


# The trigram indexes need pg_trgm; `flask db upgrade` creates it, and so does create_all.
event.listen(
    Account.__table__, "before_create",
    DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm").execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
)
