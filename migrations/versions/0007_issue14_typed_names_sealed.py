"""typed names sealed in reset_requests; audit events keep no typed name

Revision ID: 0007_issue14_sealed_names
Revises: 0006_sessions_quotas
Create Date: 2026-12-01 10:00:00

The reset box's typed name was kept in clear in `reset_requests.username` and copied into the
`reset.requested` (and `sign_in.throttled`) audit events. Pending requests are carried over
sealed (so the dispatcher still answers them); resolved ones keep nothing. Events for no
account keep a keyed hash of the name instead; events for an account keep only the link.
"""
import sqlalchemy as sa
from alembic import op

from service.platform.sealing import TYPED_USERNAME, open_sealed, seal, username_hash

revision = "0007_issue14_sealed_names"
down_revision = "0006_sessions_quotas"
branch_labels = None
depends_on = None

SCRUBBED_EVENTS = ("reset.requested", "sign_in.throttled")

requests_table = sa.table(
    "reset_requests", sa.column("id", sa.Integer), sa.column("username", sa.String),
    sa.column("username_sealed", sa.Text), sa.column("status", sa.String),
)
events_table = sa.table(
    "audit_events", sa.column("id", sa.Integer), sa.column("type", sa.String),
    sa.column("account_id", sa.Integer), sa.column("details", sa.JSON),
)
def upgrade():
    connection = op.get_bind()
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_sealed", sa.Text(), nullable=True))
    for request_id, username, status in connection.execute(
        sa.select(requests_table.c.id, requests_table.c.username, requests_table.c.status)
    ):
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
    ):
        if not isinstance(details, dict) or "username" not in details:
            continue
        typed = details.pop("username")
        if account_id is None and isinstance(typed, str):
            details["username_hash"] = username_hash(typed)
        connection.execute(events_table.update().where(events_table.c.id == event_id).values(details=details))


def downgrade():
    connection = op.get_bind()
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username", sa.String(length=150), nullable=True))
    for request_id, sealed in connection.execute(sa.select(requests_table.c.id, requests_table.c.username_sealed)):
        connection.execute(
            requests_table.update().where(requests_table.c.id == request_id).values(
                username=open_sealed(TYPED_USERNAME, sealed) if sealed else ""
            )
        )
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.alter_column("username", existing_type=sa.String(length=150), nullable=False)
        batch_op.drop_column("username_sealed")
