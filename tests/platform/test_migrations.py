"""The migrations: `flask db upgrade` on an empty database creates every table, and the
schema it makes is exactly what the models describe (autogenerate finds nothing to do)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import inspect, text

from service import create_app
from service.accounts.records import create_account, find_account
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.sealing import username_hash
from tests.conftest import test_settings as settings_for


@pytest.fixture
def bare_app(database_url: str) -> Iterator[Flask]:
    """An app on an empty database, without db.create_all(): only migrations make its tables."""
    app = create_app(settings_for(database_url))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def upgrade(app: Flask, revision: str = "head") -> None:
    with app.app_context():
        flask_migrate.upgrade(directory=app.extensions["migrate"].directory, revision=revision)


def downgrade(app: Flask, revision: str) -> None:
    with app.app_context():
        flask_migrate.downgrade(directory=app.extensions["migrate"].directory, revision=revision)


def table_names(app: Flask) -> set[str]:
    with app.app_context():
        return set(inspect(db.engine).get_table_names())


def insert_old_account(username: str, password_hash: str | None = None) -> int:
    """An account row as an older schema holds it: plain SQL, since the models name columns
    that schema does not have yet."""
    db.session.execute(
        text(
            "INSERT INTO accounts (username, username_key, password_hash, status, must_change_password, created_at,"
            " search_text, phone_digits)"
            " VALUES (:username, :key, :password_hash, 'active', false, '2026-01-01 00:00:00', :search, '')"
        ),
        {"username": username, "key": username, "search": username, "password_hash": password_hash},
    )
    account_id: int = db.session.execute(text("SELECT id FROM accounts WHERE username = :u"), {"u": username}).scalar_one()
    return account_id


def schema_differences(app: Flask) -> list[Any]:
    """What alembic's autogenerate would change to make the database match the models."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, db.metadata)


def test_the_database_starts_empty(bare_app: Flask) -> None:
    assert table_names(bare_app) == set()


def test_upgrade_creates_every_table(bare_app: Flask) -> None:
    upgrade(bare_app)
    tables = table_names(bare_app)
    assert set(db.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_after_upgrade_autogenerate_finds_no_difference(bare_app: Flask) -> None:
    upgrade(bare_app)
    assert schema_differences(bare_app) == []


def test_a_schema_behind_the_models_is_noticed(bare_app: Flask) -> None:
    # The check above must be able to fail: stop at the first revision and it does.
    scripts = ScriptDirectory(bare_app.extensions["migrate"].directory)
    upgrade(bare_app, scripts.get_base())
    differences = schema_differences(bare_app)
    if set(db.metadata.tables) <= table_names(bare_app):
        pytest.fail("the first migration already has every table; pick a later check")
    assert differences


def test_upgrade_through_the_cli(bare_app: Flask) -> None:
    runner: FlaskCliRunner = bare_app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert set(db.metadata.tables) <= table_names(bare_app)


def test_upgrade_twice_is_harmless(bare_app: Flask) -> None:
    upgrade(bare_app)
    upgrade(bare_app)
    assert schema_differences(bare_app) == []


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(bare_app: Flask) -> None:
    upgrade(bare_app)
    downgrade(bare_app, "base")
    assert table_names(bare_app) <= {"alembic_version"}
    upgrade(bare_app)
    assert schema_differences(bare_app) == []


def test_the_migrated_schema_works_for_the_service(bare_app: Flask) -> None:
    upgrade(bare_app)
    with bare_app.app_context():
        create_account(db.session, username="jane", email="jane@example.com", password=None, actor="cli", now=utcnow())
        found = find_account(db.session, " JANE ")
        assert found is not None and found.created_at.tzinfo is not None


def test_upgrading_fills_the_search_columns_of_existing_accounts(bare_app: Flask) -> None:
    upgrade(bare_app, "0007_frozen_accounts")
    with bare_app.app_context():
        db.session.execute(
            text(
                "INSERT INTO accounts (username, username_key, email, email_key, status, must_change_password, created_at)"
                " VALUES ('José', 'josé', 'Jose@Example.com', 'jose@example.com', 'active', false, '2026-01-01 00:00:00')"
            )
        )
        db.session.commit()
    upgrade(bare_app)
    with bare_app.app_context():
        row = db.session.execute(text("SELECT search_text, phone_digits FROM accounts")).one()
    assert tuple(row) == ("jose\njose@example.com", "")


def test_upgrade_wraps_legacy_hashes_already_imported(bare_app: Flask) -> None:
    import passlib.hash

    from service.accounts.passwords import verify_password

    bare = passlib.hash.bcrypt.using(rounds=4).hash("legacy systems never forget")
    modern = passlib.hash.argon2.using(memory_cost=64, rounds=1, parallelism=1).hash("a modern password here")
    upgrade(bare_app, "0008_issue13_support")
    with bare_app.app_context():
        for username, stored in (("legacy", bare), ("modern", modern), ("broken", "$2b$04$tooshort")):
            insert_old_account(username, stored)
        db.session.commit()
    upgrade(bare_app)
    with bare_app.app_context():
        legacy, modern_account, broken = (find_account(db.session, name) for name in ("legacy", "modern", "broken"))
        assert legacy is not None and modern_account is not None and broken is not None
        assert legacy.password_hash is not None and legacy.password_hash.startswith("wrapped:bcrypt:4:")
        assert bare[-31:] not in legacy.password_hash  # bcrypt's digest is its last 31 characters
        assert verify_password("legacy systems never forget", legacy.password_hash)[0] is True
        assert modern_account.password_hash == modern
        assert broken.password_hash == "$2b$04$tooshort"


def test_upgrade_tells_how_each_reset_already_used_was_used(bare_app: Flask) -> None:
    # Before the column, only the audit event of the change said whether a link's code was typed.
    upgrade(bare_app, "0012_issue12_reminders")
    with bare_app.app_context():
        account_id = insert_old_account("jane")
        for number, (method, used_at, via) in enumerate(
            (
                ("link", "2026-11-01 10:00:00", "reset_code"),
                ("link", "2026-11-01 11:00:00", "reset_link"),
                ("temporary_password", "2026-11-01 12:00:00", "temporary_password"),
                ("link", None, None),
            )
        ):
            db.session.execute(
                text(
                    "INSERT INTO password_resets (account_id, method, requested_by, secret_hash, created_at, expires_at,"
                    " used_at, code_attempts) VALUES (:account, :method, 'self', :hash, '2026-11-01 09:00:00',"
                    " '2026-11-02 09:00:00', :used_at, 0)"
                ),
                {"account": account_id, "method": method, "hash": f"h{number}", "used_at": used_at},
            )
            if via is not None:
                db.session.execute(
                    text(
                        "INSERT INTO audit_events (at, type, account_id, actor, details)"
                        " VALUES (:at, 'password.changed', :account, 'self', :details)"
                    ),
                    {"at": used_at, "account": account_id, "details": f'{{"via": "{via}"}}'},
                )
        db.session.commit()
    upgrade(bare_app)
    with bare_app.app_context():
        rows = db.session.execute(text("SELECT method, used_via FROM password_resets ORDER BY id")).all()
    assert [tuple(row) for row in rows] == [
        ("link", "reset_code"), ("link", "reset_link"), ("temporary_password", "temporary_password"), ("link", None),
    ]


def test_upgrade_keeps_support_searches_as_keyed_hashes(bare_app: Flask) -> None:
    # Before 0019 a search kept the text typed (an address, a name, a number) in the trail.
    upgrade(bare_app, "0018_reset_language")
    with bare_app.app_context():
        for query in ("erin@example.com", "Uniquename"):
            db.session.execute(
                text(
                    "INSERT INTO audit_events (at, type, actor, details)"
                    " VALUES ('2026-11-01 10:00:00', 'support.searched', 'agent:ann', :details)"
                ),
                {"details": json.dumps({"query": query})},
            )
        db.session.execute(
            text(
                "INSERT INTO audit_events (at, type, actor, details)"
                " VALUES ('2026-11-01 10:00:00', 'reset.requested', 'self', :details)"
            ),
            {"details": json.dumps({"query": "not a search", "outcome": "issued"})},
        )
        db.session.commit()
    upgrade(bare_app)
    with bare_app.app_context():
        details = [
            row if isinstance(row, dict) else json.loads(row)
            for row in db.session.execute(text("SELECT details FROM audit_events ORDER BY id")).scalars()
        ]
        assert details == [
            {"query_hash": username_hash("erin@example.com")},
            {"query_hash": username_hash("uniquename")},
            {"query": "not a search", "outcome": "issued"},
        ]


def test_upgrade_erases_the_address_of_username_reminders_already_sent_or_failed(bare_app: Flask) -> None:
    # Before 0021 a reminder, which belongs to no account, kept the typed address once sent.
    upgrade(bare_app, "0020_reset_code_selector")
    with bare_app.app_context():
        account_id = insert_old_account("jane")
        for kind, recipient, status, account in (
            ("email", "typed@example.com", "sent", None),
            ("email", "failed@example.com", "failed", None),
            ("email", "waiting@example.com", "pending", None),
            ("email", "jane@example.com", "sent", account_id),
            ("webhook", "https://shop.example/hooks", "sent", None),
        ):
            db.session.execute(
                text(
                    "INSERT INTO outbox (kind, recipient, subject, text_body, status, attempts, next_attempt_at,"
                    " created_at, account_id) VALUES (:kind, :recipient, 's', 'b', :status, 1, '2026-11-01 10:00:00',"
                    " '2026-11-01 10:00:00', :account)"
                ),
                {"kind": kind, "recipient": recipient, "status": status, "account": account},
            )
        db.session.commit()
    upgrade(bare_app)
    with bare_app.app_context():
        recipients = db.session.execute(text("SELECT recipient FROM outbox ORDER BY id")).scalars().all()
    assert recipients == [
        "(erased)", "(erased)", "waiting@example.com", "jane@example.com", "https://shop.example/hooks",
    ]
