"""support: profile fields on accounts, the columns and indexes search matches, email changes

Revision ID: 0008_issue13_support
Revises: 0008_issue12_codes_quotas
Create Date: 2026-12-01 09:00:00

"""
import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime

from service.platform.text import searchable

revision = "0008_issue13_support"
down_revision = "0008_issue12_codes_quotas"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("full_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("phone", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("phone_digits", sa.String(length=40), nullable=True))
    _fill_search_columns()
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column("search_text", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("phone_digits", existing_type=sa.String(length=40), nullable=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in ("search_text", "phone_digits"):
        op.create_index(
            f"ix_accounts_{column}_trgm", "accounts", [column],
            postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"},
        )

    op.create_table(
        "email_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("new_email", sa.String(length=254), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_email_changes_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_changes")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_email_changes_secret_hash")),
    )
    with op.batch_alter_table("email_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_changes_account_id"), ["account_id"], unique=False)


def _fill_search_columns():
    """Compute the search forms of the accounts that exist, in batches (the same code as the app)."""
    connection = op.get_bind()
    accounts = sa.table(
        "accounts", sa.column("id"), sa.column("username"), sa.column("email"), sa.column("full_name"),
        sa.column("phone"), sa.column("search_text"), sa.column("phone_digits"),
    )
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(accounts.c.id, accounts.c.username, accounts.c.email)
            .where(accounts.c.id > last_id).order_by(accounts.c.id).limit(1000)
        ).all()
        if not rows:
            return
        connection.execute(
            accounts.update().where(accounts.c.id == sa.bindparam("row_id")).values(
                search_text=sa.bindparam("text"), phone_digits=""
            ),
            [
                {"row_id": row.id, "text": "\n".join(searchable(part) for part in (row.username, row.email) if part)}
                for row in rows
            ],
        )
        last_id = rows[-1].id


def downgrade():
    op.drop_table("email_changes")
    op.drop_index("ix_accounts_phone_digits_trgm", table_name="accounts")
    op.drop_index("ix_accounts_search_text_trgm", table_name="accounts")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("phone_digits")
        batch_op.drop_column("search_text")
        batch_op.drop_column("phone")
        batch_op.drop_column("full_name")
