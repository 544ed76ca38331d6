"""reset codes and their attempts; each account's hourly reset-mail quota

Revision ID: 0008_issue12_codes_quotas
Revises: 0007_issue10_password_expiry
Create Date: 2026-11-30 10:00:00

"""
import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime

revision = "0008_issue12_codes_quotas"
down_revision = "0007_issue10_password_expiry"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "reset_mail_quotas",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_reset_mail_quotas_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_reset_mail_quotas")),
    )
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("code_attempts", sa.Integer(), server_default="0", nullable=False))


def downgrade():
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_column("code_attempts")
        batch_op.drop_column("code_hash")
    op.drop_table("reset_mail_quotas")
