"""typed names sealed in reset_requests; audit events keep no typed name

Revision ID: 0007_issue14_sealed_names
Revises: 0007_frozen_accounts
Create Date: 2026-12-01 10:00:00

The reset box's typed name was kept in clear in `reset_requests.username` and copied into the
`reset.requested` (and `sign_in.throttled`) audit events. Pending requests are carried over
sealed (so the dispatcher still answers them); resolved ones keep nothing. Events for no
account keep a keyed hash of the name instead; events for an account keep only the link.
Queued mail and webhook bodies are sealed too; delivered ones, and failed emails, dropped.
"""
import sqlalchemy as sa
from alembic import op

from service.platform.sealing import QUEUED_MAIL, TYPED_USERNAME, open_sealed, seal, username_hash

revision = "0007_issue14_sealed_names"
down_revision = "0007_frozen_accounts"
branch_labels = None
depends_on = None

SCRUBBED_EVENTS = ("reset.requested", "sign_in.throttled")
SENT_BODY = "(delivered; the body is not kept)"
FAILED_BODY = "(failed; the body is not kept)"

requests_table = sa.table(
    "reset_requests", sa.column("id", sa.Integer), sa.column("username", sa.String),
    sa.column("username_sealed", sa.Text), sa.column("status", sa.String),
)
events_table = sa.table(
    "audit_events", sa.column("id", sa.Integer), sa.column("type", sa.String),
    sa.column("account_id", sa.Integer), sa.column("details", sa.JSON),
)
outbox_table = sa.table(
    "outbox", sa.column("id", sa.Integer), sa.column("kind", sa.String), sa.column("status", sa.String),
    sa.column("text_body", sa.Text), sa.column("html_body", sa.Text),
)


def upgrade():
    connection = op.get_bind()
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_sealed", sa.Text(), nullable=True))
    for request_id, username, status in connection.execute(
        sa.select(requests_table.c.id, requests_table.c.username, requests_table.c.status)
    ).all():
        sealed = seal(TYPED_USERNAME, username) if status == "pending" else ""
        connection.execute(
            requests_table.update().where(requests_table.c.id == request_id).values(username_sealed=sealed)
        )
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.alter_column("username_sealed", existing_type=sa.Text(), nullable=False)
        batch_op.drop_column("username")

    for event_id, account_id, details in connection.execute(
        sa.select(events_table.c.id, events_table.c.account_id, events_table.c.details).where(
            events_table.c.type.in_(SCRUBBED_EVENTS)
        )
    ).all():
        if not isinstance(details, dict) or "username" not in details:
            continue
        typed = details.pop("username")
        if account_id is None and isinstance(typed, str):
            details["username_hash"] = username_hash(typed)
        connection.execute(events_table.update().where(events_table.c.id == event_id).values(details=details))

    for message_id, kind, status, text_body, html_body in connection.execute(
        sa.select(
            outbox_table.c.id, outbox_table.c.kind, outbox_table.c.status,
            outbox_table.c.text_body, outbox_table.c.html_body,
        )
    ).all():
        if status == "sent":
            values = {"text_body": SENT_BODY, "html_body": None}
        elif status == "failed" and kind == "email":
            values = {"text_body": FAILED_BODY, "html_body": None}
        elif status in ("pending", "sending") or kind == "webhook":
            values = {
                "text_body": seal(QUEUED_MAIL, text_body),
                "html_body": seal(QUEUED_MAIL, html_body) if html_body is not None else None,
            }
        else:
            continue
        connection.execute(outbox_table.update().where(outbox_table.c.id == message_id).values(**values))


def downgrade():
    connection = op.get_bind()
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username", sa.String(length=150), nullable=True))
    for request_id, sealed in connection.execute(sa.select(requests_table.c.id, requests_table.c.username_sealed)).all():
        connection.execute(
            requests_table.update().where(requests_table.c.id == request_id).values(
                username=open_sealed(TYPED_USERNAME, sealed) if sealed else ""
            )
        )
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.alter_column("username", existing_type=sa.String(length=150), nullable=False)
        batch_op.drop_column("username_sealed")
    for message_id, text_body, html_body in connection.execute(
        sa.select(outbox_table.c.id, outbox_table.c.text_body, outbox_table.c.html_body).where(
            sa.or_(outbox_table.c.status.in_(("pending", "sending")), sa.and_(
                outbox_table.c.kind == "webhook", outbox_table.c.status == "failed"
            ))
        )
    ).all():
        connection.execute(
            outbox_table.update().where(outbox_table.c.id == message_id).values(
                text_body=open_sealed(QUEUED_MAIL, text_body),
                html_body=open_sealed(QUEUED_MAIL, html_body) if html_body is not None else None,
            )
        )
