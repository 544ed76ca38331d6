"""report links work once: the change an account's notice link reported, when a reset mail's link was used

Revision ID: 0016_report_links_once
Revises: 0015_desk_overview
Create Date: 2026-12-12 09:00:00

"""
import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime

revision = "0016_report_links_once"
down_revision = "0015_desk_overview"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reported_change_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reported_at", UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_column("reported_at")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("reported_change_at")
