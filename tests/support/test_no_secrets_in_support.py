"""Nothing secret ever reaches a support agent: every response under /support and
/api/v1/support is recorded through a broad scenario (every support endpoint and console page,
pending links and temporary passwords, password changes, imported legacy hashes) and scanned
for hashes, reset tokens and their secrets, temporary passwords and API keys.

How this test was checked to fail: it was run against six leaks, patched in one at a time
(with monkeypatch, from a throwaway module reusing this test), and failed on each, naming it:
  - `"secret_hash": reset.secret_hash` added to each pending reset in
    `support_actions.account_overview` -> "GET /api/v1/support/accounts/jane (200) shows the
    secret_hash of reset 1", and the console's account page likewise;
  - the account's `password_hash` added to `support_actions.account_summary` -> search results
    show '$1$', '$2b$', ... (the imported hashes), then the argon2id ones;
  - the reset's `secret_hash`, the link token, or the temporary password appended to
    `IssuedReset.sent_to` (so to the API's 202 and the console's flash) -> "GET
    /support/accounts/john (200) shows the temporary password to john@example.com", ...;
  - the calling key's `key_hash` added to each event of `support_actions.event_json` ->
    "GET /api/v1/support/accounts/jane/events (200) shows the key_hash of API key helpdesk".
To see it fail by hand: add `"secret_hash": reset.secret_hash,` after `"method": reset.method,`
in `support_actions.account_overview` and run this module.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import passlib.hash
import pyotp
import pytest
from flask import Flask, Response, request
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from service.access.apikeys import create_api_key
from service.models import Account, Agent, ApiKey, PasswordReset
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.sealing import open_sealed
from service.resets.links import read_link_token
from service.resets.policy import reset_policy
from service.support import totp
from service.support.agents import create_agent
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import CSRF_VALUE as CSRF

AGENT_PASSWORD = "agent horse battery staple"
LEGACY_PASSWORD = "an old password from the old shop"
NEW_PASSWORD = "violet lanterns drift over quiet harbours"
LINK = re.compile(r"http://localhost/reset-password/(?!code\b)([A-Za-z0-9._-]+)")
TEMPORARY = re.compile(r"\r?\n\r?\n {4}(\S+)\r?\n")
SUPPORT_PREFIXES = ("/support", "/api/v1/support")
# Marks of a password hash, whatever the account's or its secret's value.
HASH_MARKERS = ("$argon2", "$2b$", "$2a$", "$2y$", "pbkdf2", "$P$", "$H$", "$1$", "$5$", "$6$")

# Legacy hashes as an older shop stored them (cheap rounds: it is their format that matters).
# Named so that no username looks like a hash marker itself.
LEGACY_HASHERS = {
    "olga": passlib.hash.bcrypt.using(rounds=4),
    "oscar": passlib.hash.pbkdf2_sha256.using(rounds=1000),
    "otto": passlib.hash.md5_crypt,
    "ollie": passlib.hash.phpass.using(rounds=7),
    "owen": passlib.hash.sha512_crypt.using(rounds=1000),
}


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "LOGIN_MAX_FAILURES": 3}


@dataclass
class Recorded:
    method: str
    rule: str | None
    path: str
    status: int
    body: str
    headers: list[tuple[str, str]]


@pytest.fixture
def support_responses(app: Flask) -> list[Recorded]:
    """Every response the app gives under /support and /api/v1/support, from here on."""
    recorded: list[Recorded] = []

    @app.after_request
    def record(response: Response) -> Response:
        if request.path.startswith(SUPPORT_PREFIXES):
            recorded.append(
                Recorded(
                    method=request.method,
                    rule=request.url_rule.rule if request.url_rule else None,
                    path=request.path,
                    status=response.status_code,
                    body=response.get_data(as_text=True),
                    # The agent's and the flash cookies are signed, not secret; everything else counts.
                    headers=[(k, v) for k, v in response.headers.items() if k.lower() != "set-cookie"],
                )
            )
        return response

    return recorded


@dataclass
class Secrets:
    """Everything that must never reach an agent, gathered as the scenario goes."""

    values: dict[str, str] = field(default_factory=dict)  # secret -> what it is

    def add(self, value: str | None, what: str) -> None:
        if not value:
            return
        self.values[value] = what
        # A leak may be partial (a truncated detail, one field of a hash): its long fields count too.
        for part in re.split(r"[$.]", value):
            if len(part) >= 16 and part != value:
                self.values.setdefault(part, f"part of {what}")

    def harvest_database(self, app: Flask) -> None:
        with app.app_context():
            for username, password_hash in db.session.execute(select(Account.username, Account.password_hash)):
                self.add(password_hash, f"password_hash of account {username}")
            for username, password_hash in db.session.execute(select(Agent.username, Agent.password_hash)):
                self.add(password_hash, f"password_hash of agent {username}")
            for reset_id, secret_hash, code_hash in db.session.execute(
                select(PasswordReset.id, PasswordReset.secret_hash, PasswordReset.code_hash)
            ):
                self.add(secret_hash, f"secret_hash of reset {reset_id}")
                if code_hash:
                    self.add(code_hash, f"code_hash of reset {reset_id}")
            for name, key_hash in db.session.execute(select(ApiKey.name, ApiKey.key_hash)):
                self.add(key_hash, f"key_hash of API key {name}")

    def harvest_mail(self, app: Flask, smtp: SmtpSink) -> None:
        for message in smtp.messages:
            text = smtp.text_of(message)
            for token in LINK.findall(text):
                self.add(token, f"link token to {message['To']}")
                with app.app_context():
                    self.add(read_link_token(token, policy=reset_policy()).secret, f"link secret to {message['To']}")
            for temporary in TEMPORARY.findall(text):
                if message["Subject"] == "Your temporary password":
                    self.add(temporary, f"temporary password to {message['To']}")
                elif message["Subject"] == "Reset your password":
                    self.add(temporary, f"reset code to {message['To']}")

    def kinds(self) -> set[str]:
        return {what.split(" of ")[0].split(" to ")[0] for what in self.values.values() if not what.startswith("part")}


@dataclass
class Doors:
    """The ways into support: an agent key, a signed-in agent's browser, and a stranger."""

    app: Flask
    api: FlaskClient
    agent_key: dict[str, str]
    client_key: dict[str, str]
    console: FlaskClient
    stranger: FlaskClient

    def csrf(self, url: str) -> str:
        page = self.console.get(url)
        assert page.status_code == 200, (url, page.status_code)
        return CSRF.search(page.get_data(as_text=True)).group(1)

    def console_action(self, username: str, action: str, **fields: str) -> None:
        url = f"/support/accounts/{username}/{action}"
        # Any console page carries the session's CSRF token (an unavailable action redirects).
        response = self.console.post(
            url, data={"csrf_token": self.csrf("/support"), "verified_by": "callback", **fields}, follow_redirects=True
        )
        assert response.status_code == 200

    def api_reset(self, username: str, method: str) -> None:
        response = self.api.post(
            f"/api/v1/support/accounts/{username}/password-resets",
            json={"method": method, "note": "scan", "ticket": "T-1"}, headers=self.agent_key,
        )
        assert response.status_code == 202, response.get_data(as_text=True)

    def look_at_everything(self, usernames: list[str], *, confirm_pages: bool = True) -> None:
        """Every read-only support call and page, for every account, and the usual mistakes."""
        key = self.agent_key
        # Between them these queries find every account, by username and by email.
        for q in ("j", "o", "n", "jane@example.com", "JOHN@EXAMPLE.COM", "%"):
            self.api.get("/api/v1/support/accounts", query_string={"q": q, "per_page": 50}, headers=key)
            self.console.get("/support", query_string={"q": q})
        self.console.get("/support")
        for username in usernames:
            self.api.get(f"/api/v1/support/accounts/{username}", headers=key)
            self.api.get(f"/api/v1/support/accounts/{username}/events", query_string={"per_page": 50}, headers=key)
            self.console.get(f"/support/accounts/{username}")
            if confirm_pages:
                for action in ("reset-link", "temporary-password", "unlock", "freeze", "unfreeze", "email", "close"):
                    self.console.get(f"/support/accounts/{username}/{action}")
        # Mistakes and refusals answer too; their bodies count as well.
        self.api.get("/api/v1/support/accounts", query_string={"q": ""}, headers=key)
        self.api.get("/api/v1/support/accounts/nobody", headers=key)
        self.api.get("/api/v1/support/accounts/nobody/events", headers=key)
        self.api.post("/api/v1/support/accounts/nobody/password-resets", json={"method": "link"}, headers=key)
        self.api.post("/api/v1/support/accounts/nobody/unlock", headers=key)
        self.api.post("/api/v1/support/accounts/nobody/freeze", json={"reason": "scan"}, headers=key)
        self.api.post("/api/v1/support/accounts/nobody/unfreeze", headers=key)
        self.api.post("/api/v1/support/accounts/nobody/email", json={"email": "scan@example.org"}, headers=key)
        self.api.post(f"/api/v1/support/accounts/{usernames[0]}/password-resets", json={"method": "fax"}, headers=key)
        self.api.post("/api/v1/support/accounts/noemail/password-resets", json={"method": "link"}, headers=key)
        self.api.get(f"/api/v1/support/accounts/{usernames[0]}", headers=self.client_key)
        self.api.get(f"/api/v1/support/accounts/{usernames[0]}")
        self.console.get("/support/accounts/nobody")
        self.console.get(f"/support/accounts/{usernames[0]}/delete")
        self.console.post(f"/support/accounts/{usernames[0]}/reset-link", data={})
        self.console_action("noemail", "reset-link")
        self.stranger.get("/support")
        self.stranger.get(f"/support/accounts/{usernames[0]}")
        self.stranger.get("/support/login")
        self.stranger.post("/support/login", data={"username": "alice", "password": AGENT_PASSWORD})


@pytest.fixture
def doors(
    support_responses: list[Recorded], app: Flask, make_key: Callable[[str], dict[str, str]], client_key: dict[str, str]
) -> Doors:
    with app.app_context():
        create_agent(
            db.session, username="alice", email="alice@shop.example", password=AGENT_PASSWORD, now=utcnow(),
            supervisor=True,
        )
        _key, presented = create_api_key(db.session, "helpdesk", "agent", now=utcnow())
        db.session.commit()
    console = app.test_client()
    console.post(
        "/support/login",
        data={"csrf_token": CSRF.search(console.get("/support/login").get_data(as_text=True)).group(1),
              "username": "alice", "password": "not the password"},
    )
    signed_in = console.post(
        "/support/login",
        data={"csrf_token": CSRF.search(console.get("/support/login").get_data(as_text=True)).group(1),
              "username": "alice", "password": AGENT_PASSWORD},
    )
    assert signed_in.status_code == 302
    return Doors(
        app=app, api=app.test_client(), agent_key={"Authorization": f"Bearer {presented}"}, client_key=client_key,
        console=console, stranger=app.test_client(),
    )


def import_legacy_accounts(runner: FlaskCliRunner, tmp_path: Path) -> list[str]:
    path = tmp_path / "legacy.csv"
    lines = ["username,email,password_hash"]
    lines += [f"{name},{name}@example.com,{hasher.hash(LEGACY_PASSWORD)}" for name, hasher in LEGACY_HASHERS.items()]
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(args=["users", "import", str(path)])
    assert result.exit_code == 0, result.output
    return list(LEGACY_HASHERS)


def set_password_through_link(app: Flask, token: str, password: str) -> None:
    customer = app.test_client()
    customer.get(f"/reset-password/{token}")
    form = customer.get("/reset-password/new").get_data(as_text=True)
    response = customer.post(
        "/reset-password/new",
        data={"csrf_token": CSRF.search(form).group(1), "new_password": password, "confirm_password": password},
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def newest_mail(smtp: SmtpSink, address: str, subject: str) -> str:
    return smtp.text_of([m for m in smtp.to(address) if m["Subject"] == subject][-1])


def test_no_support_response_ever_carries_a_secret(
    support_responses: list[Recorded],
    doors: Doors,
    app: Flask,
    runner: FlaskCliRunner,
    smtp: SmtpSink,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    secrets = Secrets()
    verify = "/api/v1/auth/verify"
    make_account("jane", email="jane@example.com")
    make_account("john", email="john@example.com")
    make_account("noemail", email=None)
    legacy = import_legacy_accounts(runner, tmp_path)
    usernames = ["jane", "john", "noemail", *legacy]

    def harvest() -> None:
        secrets.harvest_database(app)
        secrets.harvest_mail(app, smtp)

    def checkpoint(*, confirm_pages: bool = True) -> None:
        """Look at everything in the state the scenario has reached; keep what is secret now."""
        harvest()
        doors.look_at_everything(usernames, confirm_pages=confirm_pages)
        harvest()

    # Imported legacy hashes, as they are before anyone signs in.
    checkpoint()

    # Pending resets of both kinds, through both doors, for new and legacy accounts alike.
    doors.api_reset("jane", "link")
    doors.api_reset("olga", "temporary_password")
    doors.console_action("john", "temporary-password", ticket="T-2", note="called in")
    doors.console_action("ollie", "reset-link")
    harvest()
    run_dispatcher(app)
    checkpoint()  # the mail is out: its tokens and temporary passwords are known now

    # Legacy accounts sign in, and their hashes are upgraded to argon2id.
    for name in legacy:
        response = doors.api.post(verify, json={"username": name, "password": LEGACY_PASSWORD}, headers=doors.client_key)
        assert response.status_code == 200
    checkpoint(confirm_pages=False)

    # Passwords change every way there is: a link, a temporary password then a change, the API.
    jane_link = LINK.search(newest_mail(smtp, "jane@example.com", "Reset your password")).group(1)
    set_password_through_link(app, jane_link, NEW_PASSWORD)
    john_temporary = TEMPORARY.search(newest_mail(smtp, "john@example.com", "Your temporary password")).group(1)
    signed_in = doors.api.post(verify, json={"username": "john", "password": john_temporary}, headers=doors.client_key)
    assert signed_in.get_json()["must_change_password"] is True
    changed = doors.api.post(
        "/api/v1/accounts/john/password",
        json={"current_password": john_temporary, "new_password": NEW_PASSWORD},
        headers=doors.client_key,
    )
    assert changed.status_code == 204
    changed = doors.api.post(
        "/api/v1/accounts/otto/password",
        json={"current_password": LEGACY_PASSWORD, "new_password": NEW_PASSWORD},
        headers=doors.client_key,
    )
    assert changed.status_code == 204
    run_dispatcher(app)
    checkpoint(confirm_pages=False)

    # A locked account unlocked both ways; fresh resets of both kinds left pending.
    for _ in range(3):
        doors.api.post(verify, json={"username": "jane", "password": "wrong wrong wrong"}, headers=doors.client_key)
    doors.console_action("jane", "unlock")
    doors.api.post("/api/v1/support/accounts/jane/unlock", headers=doors.agent_key)
    doors.console_action("jane", "reset-link", ticket="T-3")
    doors.api_reset("john", "link")
    doors.console_action("owen", "temporary-password")
    doors.api.post("/api/v1/password-resets", json={"username": "oscar"})
    run_dispatcher(app)
    doors.api.get("/api/v1/support/reset-requests", query_string={"username": "oscar"}, headers=doors.agent_key)
    # The export shows everything kept about an account: it too must hold no secret.
    with app.app_context():
        _key, admin = create_api_key(db.session, "privacy-officer", "admin", now=utcnow())
        db.session.commit()
    for name in ("jane", "otto", "owen"):
        doors.api.get(f"/api/v1/support/accounts/{name}/export", headers={"Authorization": f"Bearer {admin}"})
    # The desk overview counts what all of this did: counts and actors, nothing else.
    for table in ("days", "agents"):
        doors.api.get("/api/v1/support/overview.csv", query_string={"table": table}, headers={"Authorization": f"Bearer {admin}"})
        doors.console.get("/support/overview.csv", query_string={"table": table})
    doors.api.get("/api/v1/support/overview", headers={"Authorization": f"Bearer {admin}"})
    doors.console.get("/support/overview")
    # The agent sets up an authenticator app (the page shows the agent their own key, and only
    # then), and signs in again in two steps: password, then code.
    doors.console.get("/support/totp")
    with app.app_context():
        agent = db.session.scalar(select(Agent))
        generator = pyotp.TOTP(open_sealed(totp.SEALING_PURPOSE, agent.totp_secret_sealed))
    doors.console.post("/support/totp", data={"csrf_token": doors.csrf("/support/totp"), "code": generator.now()})
    second = doors.stranger
    token = CSRF.search(second.get("/support/login").get_data(as_text=True)).group(1)
    second.post("/support/login", data={"csrf_token": token, "username": "alice", "password": AGENT_PASSWORD})
    token = CSRF.search(second.get("/support/login/code").get_data(as_text=True)).group(1)
    answer = second.post("/support/login/code", data={"csrf_token": token, "code": generator.at(utcnow() + timedelta(seconds=30))})
    assert answer.status_code == 302
    second.post("/support/logout", data={"csrf_token": CSRF.search(second.get("/support").get_data(as_text=True)).group(1)})
    checkpoint()
    doors.console.post("/support/logout", data={})
    doors.console.post("/support/logout", data={"csrf_token": doors.csrf("/support")})
    for password in ("guess one", "guess two", "guess three", AGENT_PASSWORD):  # ends throttled
        token = CSRF.search(doors.stranger.get("/support/login").get_data(as_text=True)).group(1)
        doors.stranger.post("/support/login", data={"csrf_token": token, "username": "alice", "password": password})

    # The scenario really did cover every support endpoint and method...
    expected_routes = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(SUPPORT_PREFIXES)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    seen_routes = {(r.rule, r.method) for r in support_responses}
    assert expected_routes - seen_routes == set()
    assert {r.status for r in support_responses} >= {200, 202, 204, 302, 400, 401, 403, 404, 409, 429}
    # ...and the secrets it looks for are real: hashes of every kind, links and temporary passwords.
    kinds = secrets.kinds()
    assert {"password_hash", "secret_hash", "key_hash", "link token", "link secret", "temporary password"} <= kinds
    stored_formats = " ".join(v for v, what in secrets.values.items() if what.startswith("password_hash"))
    for marker in ("$argon2id$", "$2b$", "$pbkdf2-sha256$", "$1$", "$P$", "$6$"):
        assert marker in stored_formats, marker
    assert sum(what.startswith("link token") for what in secrets.values.values()) >= 4
    assert sum(what.startswith("temporary password") for what in secrets.values.values()) >= 3

    leaks = []
    for response in support_responses:
        texts = [response.body, html.unescape(response.body), *(f"{k}: {v}" for k, v in response.headers)]
        if response.body.startswith(("{", "[")):
            texts.append(json.dumps(json.loads(response.body), ensure_ascii=False))
        for text in texts:
            for secret, what in secrets.values.items():
                if secret in text:
                    leaks.append(f"{response.method} {response.path} ({response.status}) shows the {what}")
            for marker in HASH_MARKERS:
                if marker in text:
                    leaks.append(f"{response.method} {response.path} ({response.status}) shows {marker!r}")
    assert sorted(set(leaks)) == []
