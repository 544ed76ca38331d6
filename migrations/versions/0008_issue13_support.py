"""support: profile fields on accounts

Revision ID: 0008_issue13_support
Revises: 0007_frozen_accounts
Create Date: 2026-12-01 09:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0008_issue13_support"
down_revision = "0007_frozen_accounts"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("full_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("phone", sa.String(length=40), nullable=True))


def downgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("phone")
        batch_op.drop_column("full_name")
