"""outbox: a partial index of the messages still to deliver, for the claim

Revision ID: 0017_outbox_unfinished
Revises: 0016_report_links_once
Create Date: 2026-12-03 09:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "0017_outbox_unfinished"
down_revision = "0016_report_links_once"
branch_labels = None
depends_on = None

UNFINISHED = sa.text("status IN ('pending', 'sending')")


def upgrade():
    op.create_index("ix_outbox_unfinished", "outbox", ["id"], postgresql_where=UNFINISHED, sqlite_where=UNFINISHED)


def downgrade():
    op.drop_index("ix_outbox_unfinished", table_name="outbox")
