"""imported legacy hashes wrapped in argon2id

Revision ID: 0010_issue10_legacy_wrapped
Revises: 0008_issue13_support
Create Date: 2026-12-02 10:00:00

An account imported before this revision may still hold a bare legacy hash (bcrypt, pbkdf2,
md5_crypt, ...), a digest that can be attacked offline at that scheme's speed. Each one becomes
`wrapped:<scheme>:<cost>:<settings>:<argon2id of the digest>` (see
service/accounts/passwords.py), which verifies the same passwords. A downgrade keeps them
wrapped: the digests are gone, so code before this revision cannot check them, and their
owners need a reset (or this revision again).
"""
import sqlalchemy as sa
from alembic import op

from service.accounts.passwords import LEGACY_SCHEMES, WRAPPED_PREFIX, crypt_context, wrap_legacy_hash

revision = "0010_issue10_legacy_wrapped"
down_revision = "0008_issue13_support"
branch_labels = None
depends_on = None

accounts_table = sa.table("accounts", sa.column("id", sa.Integer), sa.column("password_hash", sa.String))


def upgrade():
    connection = op.get_bind()
    context = crypt_context()
    rows = connection.execute(
        sa.select(accounts_table.c.id, accounts_table.c.password_hash).where(
            accounts_table.c.password_hash.is_not(None),
            ~accounts_table.c.password_hash.startswith(WRAPPED_PREFIX),
        )
    ).all()
    for account_id, password_hash in rows:
        if context.identify(password_hash, required=False) not in LEGACY_SCHEMES:
            continue  # argon2id, or nothing any scheme can check
        try:
            wrapped = wrap_legacy_hash(password_hash)
        except ValueError:
            continue  # damaged: it matched no password before, and still will not
        connection.execute(
            accounts_table.update().where(accounts_table.c.id == account_id).values(password_hash=wrapped)
        )


def downgrade():
    pass
