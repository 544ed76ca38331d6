"""Settings are built once in create_app: an app given its settings reads no environment (nor
.env) but the one it is handed; only the real service, built without settings, reads the shell's."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from service import create_app
from service.accounts.records import create_account
from service.models import OutboxMessage
from service.platform.clock import utcnow
from service.platform.config import DEFAULTS
from service.platform.extensions import db
from service.resets.policy import reset_policy
from tests.conftest import run_dispatcher
from tests.conftest import test_settings as settings_for

# What a shell (or a .env) might hold that would change a test's app if it were read.
EXPORTED = {
    "RESET_METHOD": "temporary_password",
    "APP_ENV": "production",
    "PASSWORD_MIN_LENGTH": "40",
    "AGENT_RESETS_PER_HOUR": "1",
    "MAIL_SERVER": "smtp.invalid",
    "OUTBOX_DISPATCH": "inline",
}


def method_of(app: Flask) -> str:
    with app.app_context():
        return str(reset_policy().method)


def dispose(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting of the service's in the environment, and a working directory with no .env;
    whatever a test exports or loads is undone after it."""
    for name in DEFAULTS:
        # Set, then removed: the monkeypatch then restores the variable's absence too, even
        # when something else (load_dotenv) sets it during the test.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_an_exported_reset_method_does_not_change_an_app_given_its_settings(
    clean_environment: pytest.MonkeyPatch, database_url: str
) -> None:
    for name, value in EXPORTED.items():
        clean_environment.setenv(name, value)
    app = create_app(settings_for(database_url))
    try:
        assert method_of(app) == "link"
        assert app.config["RESET_METHOD"] == "link"
        assert app.config["APP_ENV"] == "testing"
        assert app.config["PASSWORD_MIN_LENGTH"] == DEFAULTS["PASSWORD_MIN_LENGTH"]
        assert app.config["AGENT_RESETS_PER_HOUR"] == DEFAULTS["AGENT_RESETS_PER_HOUR"]
        assert app.config["MAIL_SERVER"] == ""
        assert app.config["OUTBOX_DISPATCH"] == "external"
    finally:
        dispose(app)


def test_a_self_service_reset_sends_a_link_whatever_the_shell_exported(
    clean_environment: pytest.MonkeyPatch, database_url: str
) -> None:
    clean_environment.setenv("RESET_METHOD", "temporary_password")
    app = create_app(settings_for(database_url))
    try:
        with app.app_context():
            db.create_all()
            create_account(db.session, username="jane", email="jane@example.com", actor="cli", now=utcnow())
            db.session.commit()
        client = app.test_client()
        assert client.post("/api/v1/password-resets", json={"username": "jane"}).status_code == 202
        run_dispatcher(app)
        with app.app_context():
            subjects = db.session.scalars(
                select(OutboxMessage.subject).where(OutboxMessage.recipient == "jane@example.com")
            ).all()
        assert subjects == ["Reset your password"]
    finally:
        dispose(app)


def test_exporting_after_the_app_is_built_changes_nothing(
    clean_environment: pytest.MonkeyPatch, database_url: str
) -> None:
    app = create_app(settings_for(database_url))
    try:
        clean_environment.setenv("RESET_METHOD", "temporary_password")
        assert method_of(app) == "link"
    finally:
        dispose(app)


def test_a_dotenv_file_is_not_read_for_an_app_given_its_settings(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    (tmp_path / ".env").write_text("RESET_METHOD=temporary_password\nAPP_ENV=production\n")
    app = create_app(settings_for(database_url))
    try:
        assert method_of(app) == "link"
        assert app.config["APP_ENV"] == "testing"
    finally:
        dispose(app)


def test_an_explicit_environ_is_read_and_the_settings_still_win_over_it(
    clean_environment: pytest.MonkeyPatch, database_url: str
) -> None:
    from_environ = create_app(settings_for(database_url), environ={"RESET_METHOD": "temporary_password"})
    overridden = create_app(
        settings_for(database_url, RESET_METHOD="link"), environ={"RESET_METHOD": "temporary_password"}
    )
    try:
        assert method_of(from_environ) == "temporary_password"
        assert from_environ.config["RESET_METHOD"] == "temporary_password"
        assert method_of(overridden) == "link"
    finally:
        dispose(from_environ)
        dispose(overridden)


def test_two_apps_in_one_process_keep_their_own_policy(
    clean_environment: pytest.MonkeyPatch, database_url: str
) -> None:
    link_app = create_app(settings_for(database_url))
    temporary_app = create_app(settings_for(database_url, RESET_METHOD="temporary_password"))
    try:
        assert (method_of(link_app), method_of(temporary_app)) == ("link", "temporary_password")
    finally:
        dispose(link_app)
        dispose(temporary_app)


def test_the_real_service_built_without_settings_reads_the_environment_and_dotenv(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """create_app() as `wsgi` calls it, in an environment the test controls entirely."""
    for name, value in {
        "APP_ENV": "testing",
        "SECRET_KEY": "settings-isolation-secret-key",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'real.db'}",
        "MAIL_SERVER": "",
        "OUTBOX_DISPATCH": "external",
        "PASSWORD_HASH_CHEAP": "true",
        "RESET_METHOD": "temporary_password",
    }.items():
        clean_environment.setenv(name, value)
    (tmp_path / ".env").write_text("AGENT_RESETS_PER_HOUR=7\nRESET_METHOD=link\n")
    app = create_app()
    try:
        assert method_of(app) == "temporary_password"  # the exported value beats the .env file's
        assert app.config["AGENT_RESETS_PER_HOUR"] == 7  # and the .env file fills in the rest
    finally:
        dispose(app)
