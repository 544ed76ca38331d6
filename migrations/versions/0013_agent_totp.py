"""agents: a second factor (TOTP), its sealed secret, when it was confirmed, the last step used

Revision ID: 0012_agent_totp
Revises: 0010_issue10_legacy_wrapped
Create Date: 2026-12-08 09:00:00

"""
import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime

revision = "0012_agent_totp"
down_revision = "0010_issue10_legacy_wrapped"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret_sealed", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("totp_confirmed_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_confirmed_at")
        batch_op.drop_column("totp_secret_sealed")
