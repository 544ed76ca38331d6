"""agent sessions and reset quotas in their own tables; retries for reset requests

Revision ID: 0006_sessions_quotas
Revises: 4d8723152b86
Create Date: 2026-11-29 23:20:00

Agent console sessions and agents' hourly reset quotas used to be read back from the audit
trail; they now live in tables of their own. The quota each actor has used this hour is
carried over from the trail, so an upgrade does not hand anyone a fresh hour. Sessions are
not carried over: the cookie now names a session row, so agents sign in once more.
"""
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime

revision = "0006_sessions_quotas"
down_revision = "4d8723152b86"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "agent_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_agent_sessions_agent_id_agents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_sessions")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_agent_sessions_secret_hash")),
    )
    with op.batch_alter_table("agent_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_sessions_agent_id"), ["agent_id"], unique=False)

    quotas = op.create_table(
        "agent_reset_quotas",
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("actor", name=op.f("pk_agent_reset_quotas")),
    )

    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_attempt_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))

    # Carry over what each agent (or agent key) used of its current hour.
    connection = op.get_bind()
    events = sa.table(
        "audit_events", sa.column("type", sa.String), sa.column("actor", sa.String), sa.column("at", UTCDateTime())
    )
    since = datetime.now(UTC) - timedelta(hours=1)
    rows = connection.execute(
        sa.select(events.c.actor, sa.func.count(), sa.func.min(events.c.at))
        .where(events.c.type == "reset.issued", events.c.at > since, events.c.actor != "self")
        .group_by(events.c.actor)
    ).all()
    if rows:
        op.bulk_insert(
            quotas,
            [{"actor": actor, "used": used, "window_started_at": first} for actor, used, first in rows],
        )


def downgrade():
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.drop_column("last_error")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
    op.drop_table("agent_reset_quotas")
    with op.batch_alter_table("agent_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_sessions_agent_id"))
    op.drop_table("agent_sessions")
