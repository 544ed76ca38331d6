"""password_resets: the keyed hash of a code's first letters, so a wrong code counts against one reset

Revision ID: 0020_reset_code_selector
Revises: 0019_search_query_hashed
Create Date: 2026-11-30 13:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0020_reset_code_selector"
down_revision = "0019_search_query_hashed"
branch_labels = None
depends_on = None


def upgrade():
    # Resets issued before this have none: a wrong code counts against each of them, as it
    # did when they were issued, until they expire within the hour.
    with op.batch_alter_table("password_resets") as table:
        table.add_column(sa.Column("code_selector", sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table("password_resets") as table:
        table.drop_column("code_selector")
