"""Operator commands: users create/import, agents create, apikeys create/list/revoke."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import passlib.hash
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from service.models import Account, Agent, ApiKey, AuditEvent
from service.platform.extensions import db
from tests.accounts.test_usernames import MALFORMED_BUT_PLAUSIBLE
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD


def verify(client: FlaskClient, key: dict[str, str], username: str, password: str) -> int:
    response = client.post("/api/v1/auth/verify", json={"username": username, "password": password}, headers=key)
    return response.status_code


def account(app: Flask, username: str) -> Account | None:
    with app.app_context():
        found = db.session.scalar(select(Account).where(Account.username == username))
        if found is not None:
            db.session.expunge(found)
        return found


def count(app: Flask, model: type) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


# --- users create -----------------------------------------------------------------------------


def test_users_create_with_password_from_stdin(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, client_key: dict[str, str]
) -> None:
    result = runner.invoke(args=["users", "create", "jane", "jane@example.com", "--password-stdin"], input=STRONG_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "jane" in result.output
    created = account(app, "jane")
    assert created is not None and created.email == "jane@example.com"
    assert created.password_hash.startswith("$argon2id$")
    assert verify(client, client_key, "jane", STRONG_PASSWORD) == 200


def test_users_create_keeps_spaces_inside_the_password(
    runner: FlaskCliRunner, client: FlaskClient, client_key: dict[str, str]
) -> None:
    password = "  " + STRONG_PASSWORD + " "
    result = runner.invoke(args=["users", "create", "jane", "jane@example.com", "--password-stdin"], input=password + "\r\n")
    assert result.exit_code == 0, result.output
    assert verify(client, client_key, "jane", password) == 200
    assert verify(client, client_key, "jane", STRONG_PASSWORD) == 401


def test_users_create_without_password_makes_an_account_that_cannot_sign_in(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, client_key: dict[str, str]
) -> None:
    result = runner.invoke(args=["users", "create", "jane", "jane@example.com"])
    assert result.exit_code == 0, result.output
    created = account(app, "jane")
    assert created is not None and created.password_hash is None
    assert verify(client, client_key, "jane", STRONG_PASSWORD) == 401


def test_users_create_is_audited(app: Flask, runner: FlaskCliRunner) -> None:
    runner.invoke(args=["users", "create", "jane", "jane@example.com"])
    with app.app_context():
        event = db.session.scalar(select(AuditEvent))
        assert event is not None
        assert (event.type, event.actor) == ("account.created", "cli")


@pytest.mark.parametrize("spelling", ["jane", "JANE", " Jane "])
def test_users_create_refuses_a_duplicate(app: Flask, runner: FlaskCliRunner, spelling: str) -> None:
    assert runner.invoke(args=["users", "create", "jane", "jane@example.com"]).exit_code == 0
    result = runner.invoke(args=["users", "create", spelling, "other@example.com"])
    assert result.exit_code != 0
    assert "taken" in result.output
    assert count(app, Account) == 1
    assert account(app, "jane").email == "jane@example.com"


def test_users_create_refuses_a_weak_password(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["users", "create", "jane", "jane@example.com", "--password-stdin"], input="short\n")
    assert result.exit_code != 0
    assert "at least 15 characters" in result.output
    assert count(app, Account) == 0


def test_users_create_refuses_a_bad_email(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["users", "create", "jane", "not-an-email"])
    assert result.exit_code != 0
    assert "email" in result.output.lower()
    assert count(app, Account) == 0


@pytest.mark.parametrize("email", MALFORMED_BUT_PLAUSIBLE)
def test_users_and_agents_create_refuse_malformed_addresses(app: Flask, runner: FlaskCliRunner, email: str) -> None:
    for group in ("users", "agents"):
        result = runner.invoke(args=[group, "create", "jane", email])
        assert result.exit_code != 0, (group, result.output)
        assert "email" in result.output.lower()
    assert count(app, Account) == 0
    assert count(app, Agent) == 0


# --- users import -----------------------------------------------------------------------------

# One password per imported row; each row's hash made here with passlib, as old systems did.
IMPORT_PASSWORD = "legacy systems never forget"
IMPORTED = {
    "bcrypt_user": passlib.hash.bcrypt.using(rounds=4),
    "pbkdf2_user": passlib.hash.pbkdf2_sha256.using(rounds=1000),
    "phpass_user": passlib.hash.phpass.using(rounds=7),
    "md5crypt_user": passlib.hash.md5_crypt,
    "sha512crypt_user": passlib.hash.sha512_crypt.using(rounds=1000),
    "argon2_user": passlib.hash.argon2.using(memory_cost=64, rounds=1, parallelism=1),
    "django_user": passlib.hash.django_pbkdf2_sha256.using(rounds=1000),
}


@pytest.fixture
def import_file(tmp_path: Path) -> Path:
    """A CSV of 7 good rows and 3 bad ones: unknown hash (line 9), bad email (10), duplicate (11)."""
    path = tmp_path / "accounts.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["username", "email", "password_hash"])  # line 1
        for username, hasher in IMPORTED.items():  # lines 2..8
            email = f"{username}@example.com" if username != "phpass_user" else ""
            writer.writerow([username, email, hasher.hash(IMPORT_PASSWORD)])
        writer.writerow(["unknown_hash_user", "u@example.com", "{SSHA}notahashanyoneknows"])  # line 9
        writer.writerow(["bad_email_user", "not-an-email", passlib.hash.md5_crypt.hash(IMPORT_PASSWORD)])  # 10
        writer.writerow(["BCRYPT_USER", "dup@example.com", passlib.hash.md5_crypt.hash("another one")])  # 11
    return path


def refused_lines(output: str) -> dict[int, str]:
    return {int(number): reason for number, reason in re.findall(r"line (\d+): (.+)", output)}


def test_users_import_reports_the_count_and_each_refused_line(
    app: Flask, runner: FlaskCliRunner, import_file: Path
) -> None:
    result = runner.invoke(args=["users", "import", str(import_file)])
    assert "Imported 7 account(s)" in result.output
    refused = refused_lines(result.output)
    assert set(refused) == {9, 10, 11}, result.output
    assert "hash" in refused[9]
    assert "email" in refused[10].lower()
    assert "taken" in refused[11]
    assert result.exit_code != 0  # something was refused: scripts can tell


def test_users_import_creates_only_the_good_rows(app: Flask, runner: FlaskCliRunner, import_file: Path) -> None:
    runner.invoke(args=["users", "import", str(import_file)])
    with app.app_context():
        names = set(db.session.scalars(select(Account.username)))
    assert names == set(IMPORTED)
    assert account(app, "bcrypt_user").email == "bcrypt_user@example.com"  # the duplicate changed nothing
    assert account(app, "phpass_user").email is None
    assert count(app, Account) == 7


def test_users_import_wraps_legacy_hashes_and_keeps_argon2id_ones(
    app: Flask, runner: FlaskCliRunner, import_file: Path
) -> None:
    with import_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    runner.invoke(args=["users", "import", str(import_file)])
    for row in rows[:7]:
        stored = account(app, row["username"]).password_hash
        if row["username"] == "argon2_user":
            assert stored == row["password_hash"]
        else:
            assert stored.startswith("wrapped:") and stored != row["password_hash"]


def test_an_imported_bcrypt_account_signs_in_and_is_upgraded_to_argon2id(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, client_key: dict[str, str], import_file: Path
) -> None:
    runner.invoke(args=["users", "import", str(import_file)])
    assert account(app, "bcrypt_user").password_hash.startswith("wrapped:bcrypt:4:$2b$04$")
    response = client.post(
        "/api/v1/auth/verify", json={"username": "bcrypt_user", "password": IMPORT_PASSWORD}, headers=client_key
    )
    assert response.status_code == 200
    assert response.get_json()["username"] == "bcrypt_user"
    upgraded = account(app, "bcrypt_user").password_hash
    assert upgraded.startswith("$argon2id$")
    assert verify(client, client_key, "bcrypt_user", IMPORT_PASSWORD) == 200
    assert account(app, "bcrypt_user").password_hash == upgraded  # no second rehash


@pytest.mark.parametrize("username", list(IMPORTED))
def test_every_imported_scheme_signs_in_and_is_upgraded(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, client_key: dict[str, str], import_file: Path, username: str
) -> None:
    runner.invoke(args=["users", "import", str(import_file)])
    assert verify(client, client_key, username, "not the legacy password") == 401
    assert not account(app, username).password_hash.startswith("$argon2id$v=19$m=8,")
    assert verify(client, client_key, username, IMPORT_PASSWORD) == 200
    assert account(app, username).password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")


def test_users_import_refuses_a_file_without_the_header(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = tmp_path / "no-header.csv"
    path.write_text("jane,jane@example.com,\n")
    result = runner.invoke(args=["users", "import", str(path)])
    assert result.exit_code != 0
    assert "username,email,password_hash" in result.output
    assert count(app, Account) == 0


def test_users_import_accepts_rows_without_hash_and_reports_wrong_column_counts(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("username,email,password_hash\nnohash,nohash@example.com,\n\nshort,row\n")
    result = runner.invoke(args=["users", "import", str(path)])
    assert "Imported 1 account(s)" in result.output
    assert set(refused_lines(result.output)) == {4}
    assert account(app, "nohash").password_hash is None


def test_users_import_refuses_a_damaged_hash_of_a_known_scheme(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient, client_key: dict[str, str], tmp_path: Path
) -> None:
    whole = passlib.hash.bcrypt.using(rounds=4).hash(IMPORT_PASSWORD)
    path = tmp_path / "damaged.csv"
    path.write_text(f"username,email,password_hash\ncut,cut@example.com,{whole[:-6]}\nwhole,,{whole}\n")
    result = runner.invoke(args=["users", "import", str(path)])
    assert "Imported 1 account(s)" in result.output
    refused = refused_lines(result.output)
    assert set(refused) == {2} and "hash" in refused[2]
    assert account(app, "cut") is None
    assert verify(client, client_key, "whole", IMPORT_PASSWORD) == 200


def test_a_clean_import_exits_zero(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    path = tmp_path / "clean.csv"
    path.write_text(f"username,email,password_hash\njane,jane@example.com,{passlib.hash.md5_crypt.hash('x')}\n")
    result = runner.invoke(args=["users", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "Imported 1 account(s); refused 0." in result.output


# --- apikeys ----------------------------------------------------------------------------------


def create_key(runner: FlaskCliRunner, name: str, role: str) -> str:
    result = runner.invoke(args=["apikeys", "create", name, "--role", role])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_apikeys_create_prints_the_key_last_and_it_works(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    presented = create_key(runner, "website", "client")
    assert presented.startswith("rdk_") and " " not in presented
    response = client.post(
        "/api/v1/accounts", json={"username": "jane", "email": "jane@example.com"},
        headers={"Authorization": f"Bearer {presented}"},
    )
    assert response.status_code == 201


def test_apikeys_create_stores_only_a_hash(app: Flask, runner: FlaskCliRunner) -> None:
    presented = create_key(runner, "website", "client")
    with app.app_context():
        stored = db.session.scalar(select(ApiKey))
        assert stored.name == "website" and stored.role == "client"
        assert presented not in (stored.key_hash, stored.name)
        assert presented[4:] not in stored.key_hash


def test_apikeys_create_refuses_a_duplicate_name_and_an_unknown_role(app: Flask, runner: FlaskCliRunner) -> None:
    create_key(runner, "website", "client")
    assert runner.invoke(args=["apikeys", "create", "website", "--role", "client"]).exit_code != 0
    assert runner.invoke(args=["apikeys", "create", "other", "--role", "root"]).exit_code != 0
    assert runner.invoke(args=["apikeys", "create", "other"]).exit_code != 0
    assert count(app, ApiKey) == 1


def test_an_agent_key_from_the_cli_gets_403_on_client_calls(runner: FlaskCliRunner, client: FlaskClient) -> None:
    presented = create_key(runner, "console", "agent")
    response = client.post(
        "/api/v1/auth/verify", json={"username": "jane", "password": "x"}, headers={"Authorization": f"Bearer {presented}"}
    )
    assert response.status_code == 403


def test_apikeys_list_shows_each_key_with_role_and_state(runner: FlaskCliRunner) -> None:
    presented = create_key(runner, "website", "client")
    create_key(runner, "ops", "admin")
    runner.invoke(args=["apikeys", "revoke", "ops"])
    result = runner.invoke(args=["apikeys", "list"])
    assert result.exit_code == 0
    lines = {line.split("\t")[0]: line for line in result.output.strip().splitlines()}
    assert set(lines) == {"website", "ops"}
    assert "\tclient\t" in lines["website"] and lines["website"].endswith("live")
    assert "\tadmin\t" in lines["ops"] and "revoked" in lines["ops"]
    assert presented not in result.output


def test_apikeys_revoke_takes_effect_at_once(runner: FlaskCliRunner, client: FlaskClient) -> None:
    headers = {"Authorization": f"Bearer {create_key(runner, 'website', 'client')}"}
    body = {"username": "nobody", "password": "x"}
    assert client.post("/api/v1/auth/verify", json=body, headers=headers).get_json()["code"] == "invalid_credentials"
    result = runner.invoke(args=["apikeys", "revoke", "website"])
    assert result.exit_code == 0, result.output
    response = client.post("/api/v1/auth/verify", json=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["code"] == "unauthorized"


def test_apikeys_revoke_of_an_unknown_or_revoked_key_fails(runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["apikeys", "revoke", "nothing"]).exit_code != 0
    create_key(runner, "website", "client")
    assert runner.invoke(args=["apikeys", "revoke", "website"]).exit_code == 0
    assert runner.invoke(args=["apikeys", "revoke", "website"]).exit_code != 0


# --- agents create ----------------------------------------------------------------------------


def test_agents_create_with_password(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["agents", "create", "Alice", "alice@example.com", "--password-stdin"], input=OTHER_STRONG_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Alice" in result.output
    with app.app_context():
        agent = db.session.scalar(select(Agent))
        assert (agent.username, agent.username_key, agent.email) == ("Alice", "alice", "alice@example.com")
        assert agent.password_hash.startswith("$argon2id$")
        assert OTHER_STRONG_PASSWORD not in agent.password_hash
    assert count(app, Account) == 0  # an agent is not a customer account


def test_agents_create_without_password(app: Flask, runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["agents", "create", "alice", "alice@example.com"]).exit_code == 0
    with app.app_context():
        assert db.session.scalar(select(Agent)).password_hash is None


@pytest.mark.parametrize(
    "args, stdin",
    [
        (["agents", "create", "ALICE", "a2@example.com"], None),
        (["agents", "create", "bob", "not-an-email"], None),
        (["agents", "create", "bob", "bob@example.com", "--password-stdin"], "short\n"),
    ],
)
def test_agents_create_refuses_duplicates_bad_emails_and_weak_passwords(
    app: Flask, runner: FlaskCliRunner, args: list[str], stdin: str | None
) -> None:
    assert runner.invoke(args=["agents", "create", "alice", "alice@example.com"]).exit_code == 0
    result = runner.invoke(args=args, input=stdin)
    assert result.exit_code != 0
    assert count(app, Agent) == 1


# --- supervisors ------------------------------------------------------------------------------


def supervisor_events(app: Flask) -> list[dict[str, object]]:
    with app.app_context():
        return list(
            db.session.scalars(select(AuditEvent.details).where(AuditEvent.type == "agent.supervisor_changed").order_by(AuditEvent.id))
        )


def test_agents_create_supervisor_and_list_shows_it(app: Flask, runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["agents", "create", "alice", "alice@example.com", "--supervisor"]).exit_code == 0
    assert runner.invoke(args=["agents", "create", "bob", "bob@example.com"]).exit_code == 0
    with app.app_context():
        assert dict(db.session.execute(select(Agent.username, Agent.supervisor)).all()) == {"alice": True, "bob": False}
        created = db.session.scalars(select(AuditEvent.details).where(AuditEvent.type == "agent.created").order_by(AuditEvent.id)).all()
    assert created == [{"agent": "alice", "supervisor": True}, {"agent": "bob"}]
    listed = runner.invoke(args=["agents", "list"]).output.splitlines()
    assert listed[0].startswith("alice\t") and listed[0].endswith("\tsupervisor")
    assert listed[1].startswith("bob\t") and not listed[1].endswith("\tsupervisor")


def test_agents_supervisor_turns_the_flag_on_and_off_audited(app: Flask, runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["agents", "create", "alice", "alice@example.com"]).exit_code == 0
    on = runner.invoke(args=["agents", "supervisor", "ALICE", "--on"])
    assert on.exit_code == 0, on.output
    assert "alice is now a supervisor" in on.output
    # Asking again changes nothing and records nothing.
    assert runner.invoke(args=["agents", "supervisor", "alice", "--on"]).exit_code == 0
    off = runner.invoke(args=["agents", "supervisor", "alice", "--off"])
    assert off.exit_code == 0 and "alice is no longer a supervisor" in off.output
    assert supervisor_events(app) == [{"agent": "alice", "supervisor": True}, {"agent": "alice", "supervisor": False}]
    with app.app_context():
        assert db.session.scalar(select(Agent.supervisor)) is False


def test_agents_supervisor_refuses_an_unknown_agent_or_a_missing_choice(app: Flask, runner: FlaskCliRunner) -> None:
    unknown = runner.invoke(args=["agents", "supervisor", "nobody", "--on"])
    assert unknown.exit_code != 0 and "No agent named 'nobody'" in unknown.output
    assert runner.invoke(args=["agents", "create", "alice", "alice@example.com"]).exit_code == 0
    assert runner.invoke(args=["agents", "supervisor", "alice"]).exit_code != 0
    assert supervisor_events(app) == []
