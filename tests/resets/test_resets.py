"""The reset rules, called directly and over HTTP: links, temporary passwords, and no enumeration."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from service.accounts.passwords import crypt_context
from service.models import (
    Account,
    AuditEvent,
    OutboxMessage,
    PasswordReset,
    ResetRequest,
)
from service.outbox.queue import open_body
from service.platform.clock import utcnow
from service.platform.errors import NoEmailOnFile, TokenInvalid, TokenUsed, WeakPassword
from service.platform.extensions import db
from service.platform.sealing import TYPED_USERNAME, open_sealed
from service.resets.issuing import TEMPORARY_PASSWORD_ALPHABET, TEMPORARY_PASSWORD_LENGTH, issue_reset
from service.resets.links import check_link, confirm_reset, make_link_token, new_secret
from service.resets.policy import reset_policy
from service.resets.requests import request_reset
from service.worker.dispatcher import resolve_requests
from tests.conftest import (
    OTHER_STRONG_PASSWORD,
    STRONG_PASSWORD,
    SmtpSink,
    run_dispatcher,
    smtp_settings,
)
from tests.formtools import html_of, link_token_in, text_of

PUBLIC_BASE_URL = "https://account.example.com"
RESETS = "/api/v1/password-resets"
CONFIRM = "/api/v1/password-resets/confirm"
VERIFY = "/api/v1/auth/verify"
LOOK_ALIKES = set("0O1lI")


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, smtp: SmtpSink) -> dict[str, Any]:
    """Mail to the sink, links on a public origin unlike the test client's; a test may add more."""
    return {**smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, **getattr(request, "param", {})}


temporary_password_method = pytest.mark.parametrize(
    "app_settings", [{"RESET_METHOD": "temporary_password"}], indirect=True, ids=["temporary_password"]
)


# --- helpers ----------------------------------------------------------------------------------


def ask_for_reset(client: FlaskClient, username: str) -> TestResponse:
    return client.post(RESETS, json={"username": username})


def confirm(client: FlaskClient, token: str, new_password: str) -> TestResponse:
    return client.post(CONFIRM, json={"token": token, "new_password": new_password})


def verify(client: FlaskClient, key: dict[str, str], username: str, password: str) -> TestResponse:
    return client.post(VERIFY, json={"username": username, "password": password}, headers=key)


def token_in(message: EmailMessage) -> str:
    """The token of the reset link in a mail's text part."""
    return link_token_in(message, PUBLIC_BASE_URL)


def temporary_password_in(message: EmailMessage) -> str:
    match = re.search(r"^ {4}(\S+)\r?$", SmtpSink.text_of(message), re.MULTILINE)
    assert match, SmtpSink.text_of(message)
    return match.group(1)


def emailed_link_token(app: Flask, client: FlaskClient, smtp: SmtpSink, username: str = "jane") -> str:
    """Ask for a reset over HTTP, let the dispatcher send it, and return the newest link's token."""
    assert ask_for_reset(client, username).status_code == 202
    run_dispatcher(app)
    return token_in(smtp.messages[-1])


def problem_code(response: TestResponse) -> str:
    assert response.mimetype == "application/problem+json", response.get_data(as_text=True)
    return response.get_json()["code"]


def row_counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (ResetRequest, PasswordReset, OutboxMessage, AuditEvent)
        }


def audit_events(app: Flask, event_type: str) -> list[AuditEvent]:
    with app.app_context():
        events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.type == event_type)))
        for event in events:
            db.session.expunge(event)
        return events


def disable(app: Flask, username: str) -> None:
    with app.app_context():
        db.session.execute(update(Account).where(Account.username == username).values(status="disabled"))
        db.session.commit()


def all_cells(app: Flask, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Every non-null value in every table (but `skip`), as text."""
    with app.app_context():
        return [
            str(value)
            for table in db.metadata.sorted_tables
            if table.name not in skip
            for row in db.session.execute(select(table)).all()
            for value in row
            if value is not None
        ]


# --- the link flow over real SMTP -------------------------------------------------------------


def test_the_full_link_flow_over_real_smtp(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    response = ask_for_reset(client, "jane")
    assert response.status_code == 202
    assert response.get_json()["status"] == "accepted"
    assert smtp.messages == []  # nothing is sent on the request's path

    run_dispatcher(app)
    [mail] = smtp.to("jane@example.com")
    assert mail["Subject"] == "Reset your password"
    text, html = SmtpSink.text_of(mail), html_of(mail)
    token = token_in(mail)
    assert f'href="{PUBLIC_BASE_URL}/reset-password/{token}"' in html
    for part in (text, html):
        assert "60 minutes" in part
        assert "ignore this email" in part
        assert "1-844-560-7790" in part
        assert "service@canadianinsulin.com" in part
        assert "Monday to Friday, 9:00 AM to 6:00 PM" in part

    checked = client.get(f"{RESETS}/{token}")
    assert checked.status_code == 200
    body = checked.get_json()
    assert body["valid"] is True
    lifetime = datetime.fromisoformat(body["expires_at"]) - utcnow()
    assert timedelta(minutes=58) < lifetime <= timedelta(minutes=60)

    assert confirm(client, token, OTHER_STRONG_PASSWORD).status_code == 204
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200
    assert problem_code(verify(client, client_key, "jane", STRONG_PASSWORD)) == "invalid_credentials"

    run_dispatcher(app)
    notices = [m for m in smtp.to("jane@example.com") if m["Subject"] == "Your password was changed"]
    assert len(notices) == 1
    assert "1-844-560-7790" in SmtpSink.text_of(notices[0])

    reused = confirm(client, token, "yet another strong passphrase here")
    assert reused.status_code == 410
    assert problem_code(reused) == "token_used"
    assert problem_code(client.get(f"{RESETS}/{token}")) == "token_used"
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200


def test_opening_the_link_never_uses_it_up(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    token = emailed_link_token(app, client, smtp)
    assert client.get(f"{RESETS}/{token}").status_code == 200
    assert client.get(f"{RESETS}/{token}").status_code == 200
    assert confirm(client, token, OTHER_STRONG_PASSWORD).status_code == 204


def test_a_weak_password_is_refused_and_the_link_keeps_working(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    token = emailed_link_token(app, client, smtp)
    refused = confirm(client, token, "password")
    assert refused.status_code == 400
    assert problem_code(refused) == "weak_password"
    errors = refused.get_json()["errors"]
    assert errors and errors[0]["field"] == "new_password" and errors[0]["message"]
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200  # nothing changed

    assert client.get(f"{RESETS}/{token}").status_code == 200
    assert confirm(client, token, OTHER_STRONG_PASSWORD).status_code == 204


def test_a_newer_reset_leaves_the_older_link_working_until_one_is_used(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    older = emailed_link_token(app, client, smtp)
    newer = emailed_link_token(app, client, smtp)
    assert older != newer
    assert client.get(f"{RESETS}/{older}").status_code == 200
    assert confirm(client, older, OTHER_STRONG_PASSWORD).status_code == 204
    # Using one reset kills the others.
    for response in (client.get(f"{RESETS}/{newer}"), confirm(client, newer, "a third strong passphrase")):
        assert response.status_code == 400
        assert problem_code(response) == "token_invalid"


def test_a_password_change_by_another_route_kills_pending_links(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    token = emailed_link_token(app, client, smtp)
    changed = client.post(
        "/api/v1/accounts/jane/password",
        json={"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD},
        headers=client_key,
    )
    assert changed.status_code == 204
    assert problem_code(client.get(f"{RESETS}/{token}")) == "token_invalid"
    assert problem_code(confirm(client, token, "a third strong passphrase for jane")) == "token_invalid"
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200


def test_a_link_past_its_lifetime_answers_410_token_expired(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    token = emailed_link_token(app, client, smtp)
    later = utcnow() + timedelta(seconds=app.config["RESET_TOKEN_MAX_AGE"] + 60)
    with time_machine.travel(later, tick=False):
        checked = client.get(f"{RESETS}/{token}")
        assert checked.status_code == 410
        assert problem_code(checked) == "token_expired"
        refused = confirm(client, token, OTHER_STRONG_PASSWORD)
        assert refused.status_code == 410
        assert problem_code(refused) == "token_expired"
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


def test_the_stored_expiry_ends_a_link_even_while_its_signature_is_young(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    # A link issued with a shorter lifetime than today's RESET_TOKEN_MAX_AGE ends at its own time.
    make_account()
    token = emailed_link_token(app, client, smtp)
    with app.app_context():
        db.session.execute(update(PasswordReset).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert problem_code(client.get(f"{RESETS}/{token}")) == "token_expired"
    refused = confirm(client, token, OTHER_STRONG_PASSWORD)
    assert refused.status_code == 410
    assert problem_code(refused) == "token_expired"


# --- temporary passwords ----------------------------------------------------------------------


def emailed_temporary_password(app: Flask, client: FlaskClient, smtp: SmtpSink) -> str:
    assert ask_for_reset(client, "jane").status_code == 202
    run_dispatcher(app)
    [mail] = smtp.to("jane@example.com")
    assert mail["Subject"] == "Your temporary password"
    return temporary_password_in(mail)


@temporary_password_method
def test_a_temporary_password_is_mailed_from_the_no_look_alike_alphabet(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    temporary = emailed_temporary_password(app, client, smtp)
    assert len(temporary) == TEMPORARY_PASSWORD_LENGTH == 14
    assert set(temporary) <= set(TEMPORARY_PASSWORD_ALPHABET)
    assert not set(temporary) & LOOK_ALIKES
    assert not set(TEMPORARY_PASSWORD_ALPHABET) & LOOK_ALIKES
    html = html_of(smtp.messages[0])
    assert temporary in html
    assert "1-844-560-7790" in html and "service@canadianinsulin.com" in html


@temporary_password_method
def test_a_temporary_password_mail_gives_its_end_in_the_shop_s_time_zone(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    """The rest of the mail gives the customer service's hours in the shop's time; the end of
    the temporary password was in UTC, five hours off for a customer in Toronto."""
    make_account()
    # 15:00 UTC on Wednesday 25 November is 10:00 in the shop's default zone (Eastern Time).
    with time_machine.travel(datetime(2026, 11, 25, 15, 0, tzinfo=UTC), tick=False):
        emailed_temporary_password(app, client, smtp)
    text = text_of(smtp.messages[0])
    assert "(Thursday, November 26, 2026 at 10:00 AM EST)" in text, text
    assert "UTC" not in text and "UTC" not in html_of(smtp.messages[0])


@temporary_password_method
def test_a_temporary_password_replaces_the_current_one_only_once_used_then_must_be_changed(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    temporary = emailed_temporary_password(app, client, smtp)

    still = verify(client, client_key, "jane", STRONG_PASSWORD)
    assert still.status_code == 200 and still.get_json()["must_change_password"] is False

    signed_in = verify(client, client_key, "jane", temporary)
    assert signed_in.status_code == 200
    assert signed_in.get_json()["must_change_password"] is True
    assert problem_code(verify(client, client_key, "jane", STRONG_PASSWORD)) == "invalid_credentials"

    changed = client.post(
        "/api/v1/accounts/jane/password",
        json={"current_password": temporary, "new_password": OTHER_STRONG_PASSWORD},
        headers=client_key,
    )
    assert changed.status_code == 204
    after = verify(client, client_key, "jane", OTHER_STRONG_PASSWORD)
    assert after.status_code == 200 and after.get_json()["must_change_password"] is False
    assert problem_code(verify(client, client_key, "jane", temporary)) == "invalid_credentials"


@temporary_password_method
def test_an_expired_temporary_password_does_not_sign_in(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    temporary = emailed_temporary_password(app, client, smtp)
    later = utcnow() + timedelta(seconds=app.config["TEMPORARY_PASSWORD_MAX_AGE"] + 60)
    with time_machine.travel(later, tick=False):
        assert problem_code(verify(client, client_key, "jane", temporary)) == "invalid_credentials"
        current = verify(client, client_key, "jane", STRONG_PASSWORD)
        assert current.status_code == 200 and current.get_json()["must_change_password"] is False


@temporary_password_method
def test_a_used_temporary_password_stops_working_after_its_lifetime_unless_changed(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    temporary = emailed_temporary_password(app, client, smtp)
    assert verify(client, client_key, "jane", temporary).status_code == 200  # used: now the password
    later = utcnow() + timedelta(seconds=app.config["TEMPORARY_PASSWORD_MAX_AGE"] + 60)
    with time_machine.travel(later, tick=False):
        assert problem_code(verify(client, client_key, "jane", temporary)) == "invalid_credentials"


@temporary_password_method
def test_a_changed_temporary_password_no_longer_expires(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    temporary = emailed_temporary_password(app, client, smtp)
    changed = client.post(
        "/api/v1/accounts/jane/password",
        json={"current_password": temporary, "new_password": OTHER_STRONG_PASSWORD},
        headers=client_key,
    )
    assert changed.status_code == 204
    later = utcnow() + timedelta(seconds=app.config["TEMPORARY_PASSWORD_MAX_AGE"] + 60)
    with time_machine.travel(later, tick=False):
        assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200


@temporary_password_method
def test_a_temporary_password_is_stored_only_as_an_argon2_hash(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    temporary = emailed_temporary_password(app, client, smtp)
    with app.app_context():
        reset = db.session.scalars(select(PasswordReset)).one()
        assert reset.method == "temporary_password"
        assert reset.secret_hash.startswith("$argon2id$")
        assert crypt_context().verify(temporary, reset.secret_hash)
    # Once the mail is delivered no table holds the password, the outbox included.
    cells = all_cells(app)
    assert not [cell for cell in cells if temporary in cell]


# --- no enumeration ---------------------------------------------------------------------------


def test_missing_disabled_and_email_less_accounts_get_the_same_answer_and_no_mail(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account("jane")
    make_account("dora", email="dora@example.com")
    make_account("nomail", email=None)
    disable(app, "dora")

    answers = {name: ask_for_reset(client, name) for name in ("jane", "ghost", "dora", "nomail")}
    reference = answers["jane"]
    assert reference.status_code == 202
    for name, response in answers.items():
        assert (response.status_code, response.mimetype, response.get_data()) == (
            reference.status_code, reference.mimetype, reference.get_data()
        ), name

    run_dispatcher(app)
    assert [m["To"] for m in smtp.messages] == ["jane@example.com"]

    events = audit_events(app, "reset.requested")
    assert sorted(e.details["outcome"] for e in events) == ["disabled", "issued", "no_account", "no_email"]
    # Nothing typed is kept: the account link, or a keyed hash for the missing name.
    assert all("username" not in e.details for e in events)
    missing = [e for e in events if e.details["outcome"] == "no_account"]
    assert missing[0].account_id is None and len(missing[0].details["username_hash"]) == 64


@pytest.mark.parametrize("username", ["jane", "ghost"])
def test_the_request_path_writes_only_one_reset_request_row(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink, username: str
) -> None:
    make_account()
    before = row_counts(app)
    assert ask_for_reset(client, username).status_code == 202
    after = row_counts(app)
    assert {table: after[table] - before[table] for table in after} == {
        "reset_requests": 1, "password_resets": 0, "outbox": 0, "audit_events": 0,
    }
    with app.app_context():
        request = db.session.scalars(select(ResetRequest)).one()
        assert request.status == "pending"
        assert open_sealed(TYPED_USERNAME, request.username_sealed) == username
        assert username not in request.username_sealed


# --- the rules called directly ----------------------------------------------------------------


def test_request_reset_seals_the_name_as_typed_and_cut_to_the_column(app: Flask) -> None:
    with app.app_context():
        request_reset(db.session, " Jane ", policy=reset_policy(), ip="192.0.2.1", now=utcnow())
        request_reset(db.session, "x" * 500, policy=reset_policy(), ip=None, now=utcnow())
        db.session.commit()
        sealed = list(db.session.scalars(select(ResetRequest.username_sealed).order_by(ResetRequest.id)))
        names = [open_sealed(TYPED_USERNAME, one) for one in sealed]
    assert names == [" Jane ", "x" * 150]
    assert not any("Jane" in one or "xxx" in one for one in sealed)


def test_process_reset_requests_resolves_each_request_once(
    app: Flask, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    with app.app_context():
        request_reset(db.session, "JANE", policy=reset_policy(), ip=None, now=utcnow())  # any spelling names the account
        request_reset(db.session, "ghost", policy=reset_policy(), ip=None, now=utcnow())
        db.session.commit()
        assert resolve_requests(db.session, policy=reset_policy()) == 2
        assert resolve_requests(db.session, policy=reset_policy()) == 0
        statuses = set(db.session.scalars(select(ResetRequest.status)))
        assert statuses == {"processed"}
        assert db.session.scalar(select(func.count()).select_from(PasswordReset)) == 1
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def issue_link_directly(app: Flask, account_id: int, method: str = "link") -> tuple[str | None, int]:
    """Issue a reset with the rule itself; returns the link token (for links) and the reset id."""
    with app.app_context():
        account = db.session.get(Account, account_id)
        issued = issue_reset(
            db.session, account, method, policy=reset_policy(), requested_by="cli", ip=None, now=utcnow()
        )
        reset_id = issued.reset_id
        db.session.commit()
        body = open_body(db.session.scalars(select(OutboxMessage.text_body).order_by(OutboxMessage.id.desc())).first())
    match = re.search(r"/reset-password/(\S+)", body)
    return (match.group(1) if match else None), reset_id


def test_confirm_reset_checks_the_password_before_using_the_link_and_works_once(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    token, reset_id = issue_link_directly(app, account.id)
    with app.app_context():
        policy = reset_policy()
        with pytest.raises(WeakPassword):
            confirm_reset(db.session, token, "jane", policy=policy, ip=None, now=utcnow())
        db.session.rollback()
        assert check_link(db.session, token, policy=policy, now=utcnow()).id == reset_id
        confirm_reset(db.session, token, OTHER_STRONG_PASSWORD, policy=policy, ip="192.0.2.7", now=utcnow())
        db.session.commit()
        with pytest.raises(TokenUsed):
            confirm_reset(db.session, token, "a third strong passphrase for jane", policy=policy, ip=None, now=utcnow())
        db.session.rollback()
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "password.changed")).all()
        assert event.ip == "192.0.2.7" and event.details["via"] == "reset_link"


def test_a_link_with_the_right_id_but_another_secret_is_invalid(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    _token, reset_id = issue_link_directly(app, account.id)
    with app.app_context(), pytest.raises(TokenInvalid):
        check_link(db.session, make_link_token(reset_id, new_secret()), policy=reset_policy(), now=utcnow())


def test_a_link_naming_a_temporary_password_reset_is_invalid(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    _none, reset_id = issue_link_directly(app, account.id, method="temporary_password")
    with app.app_context():
        reset = db.session.get(PasswordReset, reset_id)
        assert reset.method == "temporary_password"
        with pytest.raises(TokenInvalid):
            check_link(db.session, make_link_token(reset_id, new_secret()), policy=reset_policy(), now=utcnow())


def test_a_link_of_an_account_disabled_since_is_invalid(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    token, _reset_id = issue_link_directly(app, account.id)
    disable(app, "jane")
    with app.app_context(), pytest.raises(TokenInvalid):
        check_link(db.session, token, policy=reset_policy(), now=utcnow())


def test_issue_reset_refuses_an_account_without_email_and_queues_nothing(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    account = make_account(email=None)
    with app.app_context():
        with pytest.raises(NoEmailOnFile):
            issue_reset(
                db.session, db.session.get(Account, account.id), "link", policy=reset_policy(), requested_by="cli",
                ip=None, now=utcnow(),
            )
        db.session.rollback()
    counts = row_counts(app)
    assert (counts["password_resets"], counts["outbox"]) == (0, 0)


@pytest.mark.parametrize("app_settings", [{"RESET_METHOD": "link"}, {"RESET_METHOD": "temporary_password"}],
                         indirect=True, ids=["link", "temporary_password"])
def test_a_request_for_a_missing_name_costs_the_dispatcher_the_same_work_and_keeps_nothing(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import service.resets.issuing as rules

    composed: list[str] = []
    hashed: list[str] = []
    real_compose, real_secret = rules.compose_reset_email, rules.new_reset_secret

    def counting_compose(account: Account, method: str, *args: Any, **kwargs: Any) -> Any:
        composed.append(account.username)
        return real_compose(account, method, *args, **kwargs)

    def counting_secret(method: str) -> tuple[str, str]:
        hashed.append(method)
        return real_secret(method)

    monkeypatch.setattr(rules, "compose_reset_email", counting_compose)
    monkeypatch.setattr(rules, "new_reset_secret", counting_secret)
    make_account("jane")
    make_account("nomail", email=None)
    for name in ("jane", "ghost", "nomail"):
        assert ask_for_reset(client, name).status_code == 202
    run_dispatcher(app)

    # One secret made and hashed, one mail written, for every name alike...
    assert sorted(composed) == ["ghost", "jane", "nomail"]
    assert len(hashed) == 3
    # ...but only the real account's is kept and sent.
    assert [m["To"] for m in smtp.messages] == ["jane@example.com"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PasswordReset)) == 1
        assert {m.recipient for m in db.session.scalars(select(OutboxMessage))} == {"jane@example.com"}


def test_a_temporary_password_revoked_in_the_meantime_is_not_used(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    """A sign-in that matched a temporary password just before a password change revoked it
    must not go on to make it the password."""
    from service.accounts.signin import _use_temporary_password
    from service.resets.issuing import issue_reset

    make_account("jane")
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username_key == "jane"))
        issued = issue_reset(
            db.session, account, "temporary_password", policy=reset_policy(), requested_by="cli", ip=None, now=utcnow()
        )
        db.session.commit()
        before = account.password_hash
        db.session.execute(update(PasswordReset).values(revoked_at=utcnow()))
        db.session.commit()
        pending = db.session.get(PasswordReset, issued.reset_id)
        assert _use_temporary_password(db.session, account, pending, ip=None, now=utcnow()) is None
        db.session.commit()
        db.session.refresh(account)
        assert account.password_hash == before
        assert account.must_change_password is False
