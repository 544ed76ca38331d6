"""frozen accounts: when and why an account was frozen

Revision ID: 0007_frozen_accounts
Revises: 0006_sessions_quotas
Create Date: 2026-11-29 23:20:00

"""
import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime

revision = "0007_frozen_accounts"
down_revision = "0006_sessions_quotas"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frozen_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("frozen_reason", sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("frozen_reason")
        batch_op.drop_column("frozen_at")
