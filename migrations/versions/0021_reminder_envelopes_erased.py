"""outbox: sent and failed username reminders keep no address

A reminder belongs to no account (one mail may list several), so the address typed for it was
kept after sending where no account's closing or export reached it. From now on the worker
erases it when the mail is sent or fails for good; this erases it from those already done.

Revision ID: 0021_reminder_envelopes_erased
Revises: 0020_reset_code_selector
Create Date: 2026-11-30 14:00:00

"""
from alembic import op

revision = "0021_reminder_envelopes_erased"
down_revision = "0020_reset_code_selector"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "UPDATE outbox SET recipient = '(erased)' "
        "WHERE kind = 'email' AND account_id IS NULL AND status IN ('sent', 'failed')"
    )


def downgrade():
    # The addresses are gone; there is nothing to put back.
    pass
