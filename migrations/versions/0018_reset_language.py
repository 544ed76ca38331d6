"""password_resets: the language of the reset's mail, for the password-changed notice after it

Revision ID: 0018_reset_language
Revises: 0017_outbox_unfinished
Create Date: 2026-11-30 12:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0018_reset_language"
down_revision = "0017_outbox_unfinished"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("password_resets") as table:
        table.add_column(sa.Column("language", sa.String(length=8), nullable=True))


def downgrade():
    with op.batch_alter_table("password_resets") as table:
        table.drop_column("language")
