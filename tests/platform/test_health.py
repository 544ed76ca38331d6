"""Probes (/healthz, /readyz) and the security headers every response carries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service import create_app
from service.platform.extensions import db
from tests.conftest import test_settings as settings_for


def test_healthz_answers_200(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_answers_200_while_the_database_answers(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


UNREACHABLE_DATABASES = {
    # Nothing listens on port 1: the connection is refused at once.
    "postgresql": lambda tmp_path: "postgresql+psycopg://postgres@127.0.0.1:1/x?connect_timeout=2",
    "sqlite": lambda tmp_path: f"sqlite:///{tmp_path / 'missing-directory' / 'service.db'}",
}


@pytest.fixture(params=sorted(UNREACHABLE_DATABASES))
def down_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """An app whose database cannot be reached."""
    url = UNREACHABLE_DATABASES[request.param](tmp_path)
    app = create_app(settings_for(url))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_readyz_answers_503_when_the_database_is_unreachable(down_app: Flask) -> None:
    response = down_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "unavailable", "database": "down"}
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "psycopg" not in text and "sqlite3" not in text


def test_readyz_keeps_answering_503_and_healthz_200_while_the_database_is_down(down_app: Flask) -> None:
    client = down_app.test_client()
    assert [client.get("/readyz").status_code for _ in range(3)] == [503, 503, 503]
    assert client.get("/healthz").status_code == 200


def test_readyz_recovers_when_the_database_comes_back(tmp_path: Path) -> None:
    missing = tmp_path / "later"
    app = create_app(settings_for(f"sqlite:///{missing / 'service.db'}"))
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 503
        missing.mkdir()
        assert client.get("/readyz").status_code == 200
    finally:
        with app.app_context():
            db.engine.dispose()


# --- security headers -------------------------------------------------------------------------


def assert_security_headers(response: TestResponse) -> None:
    policy = response.headers.get("Content-Security-Policy", "")
    directives = {part.strip().split(" ", 1)[0]: part.strip() for part in policy.split(";") if part.strip()}
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", policy
    assert "default-src" in directives, policy
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") == "no-referrer"


REQUESTS: dict[str, Callable[[FlaskClient, dict[str, str]], TestResponse]] = {
    "healthz": lambda client, key: client.get("/healthz"),
    "readyz": lambda client, key: client.get("/readyz"),
    "api success": lambda client, key: client.post("/api/v1/accounts", json={"username": "jane"}, headers=key),
    "api problem": lambda client, key: client.post("/api/v1/auth/verify", json={}, headers=key),
    "api 401": lambda client, key: client.post("/api/v1/auth/verify", json={}),
    "api 404": lambda client, key: client.get("/api/v1/nothing-here"),
    "page 404": lambda client, key: client.get("/no-such-page"),
    "page 405": lambda client, key: client.delete("/healthz"),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_every_response_carries_the_security_headers(client: FlaskClient, client_key: dict[str, str], name: str) -> None:
    assert_security_headers(REQUESTS[name](client, client_key))


def test_the_503_carries_the_security_headers(down_app: Flask) -> None:
    assert_security_headers(down_app.test_client().get("/readyz"))


def test_answers_are_not_cached(client: FlaskClient, client_key: dict[str, str]) -> None:
    assert client.get("/healthz").headers.get("Cache-Control") == "no-store"
    assert client.post("/api/v1/auth/verify", json={}, headers=client_key).headers.get("Cache-Control") == "no-store"


def test_a_page_error_is_an_html_page_without_a_trace(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_view_s_own_security_header_is_kept_and_none_is_doubled(client: FlaskClient) -> None:
    response = client.get("/brand.css")
    assert response.headers.getlist("Cache-Control") == ["public, max-age=3600"]
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"):
        assert len(response.headers.getlist(name)) == 1, name

