"""username reminders: self-service requests say what they ask for; resets keep an agent's ticket

Revision ID: 0012_issue12_reminders
Revises: 0012_agent_totp
Create Date: 2026-12-02 09:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0012_issue12_reminders"
down_revision = "0012_agent_totp"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=24), nullable=False, server_default="reset"))
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ticket", sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_column("ticket")
    with op.batch_alter_table("reset_requests", schema=None) as batch_op:
        batch_op.drop_column("kind")
