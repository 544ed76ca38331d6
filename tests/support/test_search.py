"""Support search for a caller on the phone: any part of a username, email or full name, the
digits of a phone number, whatever the case and accents; the search columns follow every change."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from service.accounts.profile import update_profile
from service.accounts.records import create_account, find_account
from service.models import Account
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.text import digits_of, searchable
from tests.conftest import BACKENDS

Headers = dict[str, str]


def found(client: FlaskClient, key: Headers, q: str) -> list[str]:
    response = client.get("/api/v1/support/accounts", query_string={"q": q}, headers=key)
    assert response.status_code == 200, response.get_json()
    return [account["username"] for account in response.get_json()["accounts"]]


@pytest.fixture
def people(app: Flask) -> None:
    with app.app_context():
        now = utcnow()
        for username, email, full_name, phone in [
            ("jlopez", "jl@example.com", "José López", "+1 (514) 555-0199"),
            ("mgarcia", "maria.garcia@shop.example.org", "María García", "514.555.0123"),
            ("bob", None, "Robert Lopez-Smith", None),
            ("Ærøskøbing", "aero@example.net", None, "06 12 34 56 78"),
        ]:
            create_account(db.session, username=username, email=email, full_name=full_name, phone=phone, actor="cli", now=now)
        db.session.commit()


def test_searchable_drops_case_and_accents() -> None:
    assert searchable("  José   LÓPEZ ") == "jose lopez"
    assert searchable("Straße") == "strasse"
    assert searchable("ｊａｎｅ") == "jane"
    assert digits_of("+1 (514) 555-0199") == "15145550199"


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("lopez", ["bob", "jlopez"]),  # a surname, in the name of one and the username of the other
        ("LÓPEZ", ["bob", "jlopez"]),
        ("garcía", ["mgarcia"]),
        ("example.com", ["jlopez"]),  # the middle of an email
        ("shop.example", ["mgarcia"]),
        ("maria garcia", ["mgarcia"]),
        ("robert lopez", ["bob"]),
        ("555-0199", ["jlopez"]),  # the digits of a phone number, however spaced
        ("5550199", ["jlopez"]),
        ("(514) 555", ["jlopez", "mgarcia"]),
        ("514", ["jlopez", "mgarcia"]),
        ("12 34 56", ["Ærøskøbing"]),
        ("ærø", ["Ærøskøbing"]),
        ("nobody", []),
        ("jl", ["jlopez"]),  # short: the start of a username or email
        ("lo", []),
    ],
)
def test_search_matches_any_part(client: FlaskClient, make_key: Callable[[str], Headers], q: str, expected: list[str]) -> None:
    assert found(client, make_key("agent"), q) == expected


def test_the_search_columns_follow_profile_changes(
    app: Flask, client: FlaskClient, make_key: Callable[[str], Headers], make_account: Callable[..., Account]
) -> None:
    make_account("jane", email="jane@example.com")
    key = make_key("agent")
    assert found(client, key, "dupont") == []
    with app.app_context():
        account = find_account(db.session, "jane")
        assert account is not None
        update_profile(
            db.session, account, {"full_name": "Jeanne Dupont", "email": "jd@exemple.fr", "phone": "438 555 0000"},
            actor="cli", ip=None, now=utcnow(),
        )
        db.session.commit()
    assert found(client, key, "dupont") == ["jane"]
    assert found(client, key, "exemple.fr") == ["jane"]
    assert found(client, key, "jane@example") == []  # the old address no longer finds her
    assert found(client, key, "4385550000") == ["jane"]


@pytest.mark.parametrize("database_url", [BACKENDS[1]], indirect=True)
def test_search_columns_are_indexed_with_trigrams_on_postgresql(app: Flask) -> None:
    with app.app_context():
        rows = db.session.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'accounts'")
        ).all()
    definitions = dict(rows)
    for column in ("search_text", "phone_digits"):
        assert "gin_trgm_ops" in definitions[f"ix_accounts_{column}_trgm"]
