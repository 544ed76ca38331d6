"""accounts.password_expires_at: a temporary password that became the password stops working

Revision ID: 0007_issue10_password_expiry
Revises: 0007_issue14_sealed_names

"""
from alembic import op
import sqlalchemy as sa

from service.models import UTCDateTime


revision = "0007_issue10_password_expiry"
down_revision = "0007_issue14_sealed_names"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_expires_at", UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("password_expires_at")
