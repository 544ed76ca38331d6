"""desk overview: supervisor agents; how each reset was used; indexes for counting by day

Resets already used learn how from the audit event of the change they made (its `via`, at the
same instant); a temporary password can only have been used as one.

Revision ID: 0015_desk_overview
Revises: 0012_issue12_reminders
Create Date: 2026-12-10 09:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0015_desk_overview"
down_revision = "0012_issue12_reminders"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("supervisor", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("used_via", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_password_resets_used_at", ["used_at"], unique=False)
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_type_at", ["type", "at"], unique=False)

    resets = sa.table(
        "password_resets",
        sa.column("account_id", sa.Integer), sa.column("method", sa.String),
        sa.column("used_at", sa.DateTime), sa.column("used_via", sa.String),
    )
    events = sa.table(
        "audit_events",
        sa.column("type", sa.String), sa.column("account_id", sa.Integer),
        sa.column("at", sa.DateTime), sa.column("details", sa.JSON),
    )
    via_of_the_change = (
        sa.select(events.c.details["via"].as_string())
        .where(
            events.c.type == "password.changed",
            events.c.account_id == resets.c.account_id,
            events.c.at == resets.c.used_at,
        )
        .limit(1)
        .scalar_subquery()
    )
    op.execute(resets.update().where(resets.c.used_at.is_not(None)).values(used_via=via_of_the_change))
    op.execute(
        resets.update()
        .where(resets.c.used_at.is_not(None), resets.c.used_via.is_(None), resets.c.method == "temporary_password")
        .values(used_via="temporary_password")
    )


def downgrade():
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_type_at")
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_index("ix_password_resets_used_at")
        batch_op.drop_column("used_via")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("supervisor")
