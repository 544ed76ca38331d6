"""Reset codes: every link mail carries a code for the same reset, usable by API and page."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient

from service.models import Account
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.resets.codes import CODE_ALPHABET, SELECTOR_LENGTH
from service.resets.policy import reset_policy
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import html_of, post_form, text_of
from tests.resets.test_resets import (
    CONFIRM,
    PUBLIC_BASE_URL,
    RESETS,
    all_cells,
    ask_for_reset,
    confirm,
    problem_code,
    token_in,
    verify,
)

LOOK_ALIKES = set("0O1lIL")


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, **getattr(request, "param", {})}


def code_in(message: EmailMessage) -> str:
    match = re.search(r"^ {4}([A-Z0-9]+-[A-Z0-9]+)\r?$", text_of(message), re.MULTILINE)
    assert match, text_of(message)
    return match.group(1)


def emailed(app: Flask, client: FlaskClient, smtp: SmtpSink) -> EmailMessage:
    assert ask_for_reset(client, "jane").status_code == 202
    run_dispatcher(app)
    return smtp.to("jane@example.com")[-1]


def wrong_code_for(code: str) -> str:
    """A wrong code starting like `code`: one counted against that code's reset."""
    letters = code.replace("-", "")
    rest = "".join("2" if char != "2" else "3" for char in letters[SELECTOR_LENGTH:])
    return letters[:SELECTOR_LENGTH] + rest


def confirm_code(client: FlaskClient, username: str, code: str, password: str = OTHER_STRONG_PASSWORD) -> Any:
    return client.post(CONFIRM, json={"username": username, "code": code, "new_password": password})


def test_every_link_mail_carries_a_code_from_an_alphabet_without_look_alikes(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    mail = emailed(app, client, smtp)
    code = code_in(mail)
    letters = code.replace("-", "")
    assert len(letters) >= 8
    assert set(letters) <= set(CODE_ALPHABET)
    assert not set(CODE_ALPHABET) & LOOK_ALIKES
    assert code in html_of(mail)
    assert f"{PUBLIC_BASE_URL}/reset-password/code" in text_of(mail)
    # Only a keyed hash of it is kept.
    assert not any(letters in cell or code in cell for cell in all_cells(app, skip=("outbox",)))


def test_the_code_sets_a_new_password_once_and_uses_the_link_too(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    mail = emailed(app, client, smtp)
    # Typed in small letters and without the dash, it still works.
    assert confirm_code(client, " Jane", code_in(mail).lower().replace("-", "")).status_code == 204
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200
    assert problem_code(confirm_code(client, "jane", code_in(mail), "a third strong passphrase")) == "token_used"
    assert problem_code(confirm(client, token_in(mail), "a third strong passphrase")) == "token_used"


def test_a_weak_password_leaves_the_code_working(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    code = code_in(emailed(app, client, smtp))
    assert problem_code(confirm_code(client, "jane", code, "short")) == "weak_password"
    assert confirm_code(client, "jane", code).status_code == 204


def test_a_missing_username_answers_exactly_like_a_wrong_code(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    code = code_in(emailed(app, client, smtp))
    wrong = confirm_code(client, "jane", "ABCDE-FGHJK")
    missing = confirm_code(client, "ghost", code)
    assert wrong.status_code == missing.status_code == 400
    assert wrong.get_json() == missing.get_json()
    assert problem_code(wrong) == "token_invalid"


@pytest.mark.parametrize("app_settings", [{"RESET_CODE_ATTEMPTS": 3}], indirect=True)
def test_reset_code_attempts_wrong_codes_kill_the_reset_code_and_link(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    mail = emailed(app, client, smtp)
    wrong = wrong_code_for(code_in(mail))
    for _ in range(2):
        assert problem_code(confirm_code(client, "jane", wrong)) == "token_invalid"
    assert client.get(f"{RESETS}/{token_in(mail)}").status_code == 200  # still alive after 2
    assert problem_code(confirm_code(client, "jane", wrong)) == "token_invalid"
    assert problem_code(confirm_code(client, "jane", code_in(mail))) == "token_invalid"
    assert problem_code(confirm(client, token_in(mail), OTHER_STRONG_PASSWORD)) == "token_invalid"
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


@pytest.mark.parametrize("app_settings", [{"RESET_CODE_ATTEMPTS": 3}], indirect=True)
def test_a_reset_killed_by_wrong_codes_says_so_on_its_link_and_its_code(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    mail = emailed(app, client, smtp)
    for _ in range(3):
        confirm_code(client, "jane", wrong_code_for(code_in(mail)))
    why = "Too many wrong codes were tried for this reset"
    assert why in confirm(client, token_in(mail), OTHER_STRONG_PASSWORD).get_json()["detail"]
    assert why in confirm_code(client, "jane", code_in(mail)).get_json()["detail"]
    # The page the link leads to says it too.
    opened = client.get(f"/reset-password/{token_in(mail)}")
    assert why in client.get(opened.headers["Location"]).get_data(as_text=True)


def test_a_reset_replaced_by_a_newer_one_does_not_blame_wrong_codes(
    app: Flask, client: FlaskClient, make_key: Callable[[str], dict[str, str]], make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account()
    mail = emailed(app, client, smtp)
    confirm_code(client, "jane", wrong_code_for(code_in(mail)))
    sent = client.post("/api/v1/support/accounts/jane/password-resets", json={"method": "link"}, headers=make_key("agent"))
    assert sent.status_code == 202
    detail = confirm(client, token_in(mail), OTHER_STRONG_PASSWORD).get_json()["detail"]
    assert "replaced by a newer one" in detail and "wrong codes" not in detail


def test_five_wrong_codes_by_default(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    code = code_in(emailed(app, client, smtp))
    for _ in range(4):
        confirm_code(client, "jane", wrong_code_for(code))
    assert confirm_code(client, "jane", code).status_code == 204


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_TOKEN_PER_IP": "2/minute"}], indirect=True)
def test_codes_are_rate_limited_per_ip(app: Flask, client: FlaskClient) -> None:
    for _ in range(2):
        assert confirm_code(client, "jane", "ABCDE-FGHJK").status_code == 400
    assert problem_code(confirm_code(client, "jane", "ABCDE-FGHJK")) == "rate_limited"


def test_the_code_page_leads_to_the_new_password_form(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    code = code_in(emailed(app, client, smtp))
    wrong = post_form(client, "/reset-password/code", {"username": "jane", "code": "ABCDE-FGHJK"})
    assert wrong.status_code == 400
    assert "This code is not valid" in wrong.get_data(as_text=True)
    entered = post_form(client, "/reset-password/code", {"username": "jane", "code": code})
    assert entered.status_code == 302 and entered.headers["Location"].endswith("/reset-password/new")
    done = post_form(
        client, "/reset-password/new", {"new_password": OTHER_STRONG_PASSWORD, "confirm_password": OTHER_STRONG_PASSWORD}
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/reset-password/done")
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200


def test_the_code_page_answers_a_missing_username_like_a_wrong_code(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    code = code_in(emailed(app, client, smtp))
    wrong = post_form(client, "/reset-password/code", {"username": "jane", "code": "ABCDE-FGHJK"})
    missing = post_form(client, "/reset-password/code", {"username": "ghost", "code": code})
    assert wrong.status_code == missing.status_code == 400

    def error_of(html: str) -> str:
        return re.search(r'<p class="error"[^>]*>(.*?)</p>', html, re.S).group(1)  # type: ignore[union-attr]

    assert error_of(wrong.get_data(as_text=True)) == error_of(missing.get_data(as_text=True))


def test_wrong_codes_from_someone_who_knows_only_the_username_leave_the_customers_links_working(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    """Asking three times and then typing wrong codes used to kill every reset in the customer's
    mailbox, and the mail cap then stopped any new one for the hour."""
    make_account()
    for _ in range(3):
        assert ask_for_reset(client, "jane").status_code == 202
    run_dispatcher(app)
    mails = smtp.to("jane@example.com")
    assert len(mails) == 3
    starts = {code_in(mail)[:SELECTOR_LENGTH] for mail in mails}
    stranger = next(a + b + "23456789" for a in CODE_ALPHABET for b in CODE_ALPHABET if a + b not in starts)
    for _ in range(8):  # past RESET_CODE_ATTEMPTS, under RATELIMIT_CODE_PER_USERNAME
        assert problem_code(confirm_code(client, "jane", stranger)) == "token_invalid"
    assert [client.get(f"{RESETS}/{token_in(mail)}").status_code for mail in mails] == [200, 200, 200]
    assert confirm_code(client, "jane", code_in(mails[0])).status_code == 204


@pytest.mark.parametrize("app_settings", [{"RESET_CODE_ATTEMPTS": 3}], indirect=True)
def test_wrong_codes_count_against_the_reset_whose_code_they_start_like(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import service.resets.issuing as issuing

    codes = iter(["AB23456789", "CD23456789"])
    monkeypatch.setattr(issuing, "new_code", lambda: next(codes))
    make_account()
    for _ in range(2):
        assert ask_for_reset(client, "jane").status_code == 202
    run_dispatcher(app)
    first, second = smtp.to("jane@example.com")
    assert (code_in(first), code_in(second)) == ("AB234-56789", "CD234-56789")
    for _ in range(3):
        confirm_code(client, "jane", "AB99999999")
    assert problem_code(confirm(client, token_in(first), OTHER_STRONG_PASSWORD)) == "token_invalid"
    assert client.get(f"{RESETS}/{token_in(second)}").status_code == 200
    assert confirm_code(client, "jane", "cd234 56789").status_code == 204


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_CODE_PER_USERNAME": "3/hour"}], indirect=True)
def test_codes_are_limited_per_username_from_any_address_missing_names_too(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    mail = emailed(app, client, smtp)

    def from_address(username: str, number: int) -> Any:
        return client.post(
            CONFIRM, json={"username": username, "code": "AB99999999", "new_password": OTHER_STRONG_PASSWORD},
            environ_base={"REMOTE_ADDR": f"198.51.100.{number}"},
        )

    for name in ("jane", "ghost"):
        assert [from_address(f" {name.upper()}", number).status_code for number in range(3)] == [400, 400, 400]
        refused = from_address(name, 9)
        assert problem_code(refused) == "rate_limited" and refused.headers["Retry-After"]
    # The page shares the limit; a link, which cannot be guessed, is not counted.
    page = post_form(client, "/reset-password/code", {"username": "jane", "code": "AB99999999"})
    assert page.status_code == 429
    assert client.get("/reset-password/code").status_code == 200
    assert confirm_code(client, "other", "AB99999999").status_code == 400
    assert confirm(client, token_in(mail), OTHER_STRONG_PASSWORD).status_code == 204


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_CODE_PER_USERNAME": "2/hour"}], indirect=True)
def test_padding_in_front_of_a_limited_name_does_not_reach_its_account(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    """The limit keys the name cut to 150 characters; the check looked the whole name up, so
    300 spaces and `jane` counted under the key of the empty name and still tried jane's code."""
    make_account()
    code = code_in(emailed(app, client, smtp))
    for _ in range(2):
        confirm_code(client, "jane", wrong_code_for(code))
    assert problem_code(confirm_code(client, "jane", code)) == "rate_limited"
    padded = confirm_code(client, " " * 300 + "jane", code)
    assert padded.status_code in (400, 429)
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


def test_a_wrong_code_costs_an_existing_name_the_work_of_a_missing_one(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    """The same statements, no row changed and no account loaded, whether the name has a reset
    pending or does not exist: the answer's time does not tell them apart."""
    from service.resets.codes import CodeRejected, check_code

    make_account()
    code = code_in(emailed(app, client, smtp))
    stranger = ("22" if not code.startswith("22") else "33") + "99999999"

    def attempt(username: str) -> tuple[list[str], list[int], int]:
        statements: list[str] = []
        changed: list[int] = []

        def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
            statements.append(statement)
            if statement.lstrip().upper().startswith("UPDATE"):
                changed.append(cursor.rowcount)

        with app.app_context():
            engine = db.engine
            sqlalchemy.event.listen(engine, "after_cursor_execute", seen)
            try:
                with pytest.raises(CodeRejected):
                    check_code(db.session, username, stranger, policy=reset_policy(), now=utcnow())
                loaded = len(db.session.identity_map)
                db.session.commit()
            finally:
                sqlalchemy.event.remove(engine, "after_cursor_execute", seen)
        return statements, changed, loaded

    existing, missing = attempt("jane"), attempt("ghost")
    assert existing == missing
    assert existing[1] == [0] and existing[2] == 0
