"""audit_events: support searches keep a keyed hash of what was typed, not the text

Revision ID: 0019_search_query_hashed
Revises: 0018_reset_language
Create Date: 2026-11-30 12:10:00

A search by an email address, a name or a phone number kept it in the trail as typed, for a
year, and beyond the closing of the account it named. Each such event now keeps the keyed
hash the service writes (`service.platform.sealing.username_hash`, under SECRET_KEY), so an
auditor can still check a name against it. Rows are rewritten a thousand at a time.
"""
import sqlalchemy as sa
from alembic import op

revision = "0019_search_query_hashed"
down_revision = "0018_reset_language"
branch_labels = None
depends_on = None

EVENTS = sa.table(
    "audit_events", sa.column("id", sa.Integer), sa.column("type", sa.String), sa.column("details", sa.JSON)
)


def upgrade():
    # Run by `flask db upgrade`, in the app's context: the hash is under its SECRET_KEY.
    from service.platform.sealing import username_hash

    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(EVENTS.c.id, EVENTS.c.details)
            .where(EVENTS.c.type == "support.searched", EVENTS.c.id > last_id)
            .order_by(EVENTS.c.id)
            .limit(1000)
        ).all()
        if not rows:
            return
        for event_id, details in rows:
            if isinstance(details, dict) and "query" in details:
                kept = {name: value for name, value in details.items() if name != "query"}
                kept["query_hash"] = username_hash(str(details["query"]))
                connection.execute(EVENTS.update().where(EVENTS.c.id == event_id).values(details=kept))
        last_id = rows[-1][0]


def downgrade():
    # What was typed is gone: the hashes stay.
    pass
