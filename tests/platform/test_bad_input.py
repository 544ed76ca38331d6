"""Input built to break the parser or the database gets a 4xx, never a 500: deep JSON nesting,
huge page numbers, NUL in paths and query strings, addresses longer than any of the service's."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.test_support_console import agent_client, make_agent  # noqa: F401  (fixtures)

DEEP = "[" * 2048 + "]" * 2048

# Every JSON endpoint, with the role its key needs (None: no key).
JSON_ENDPOINTS = [
    ("POST", "/api/v1/password-resets", None),
    ("POST", "/api/v1/password-resets/confirm", None),
    ("POST", "/api/v1/auth/verify", "client"),
    ("POST", "/api/v1/accounts", "client"),
    ("POST", "/api/v1/accounts/jane/password", "client"),
    ("POST", "/api/v1/admin/api-keys", "admin"),
    ("POST", "/api/v1/admin/agents", "admin"),
    ("POST", "/api/v1/support/accounts/jane/password-resets", "agent"),
]


@pytest.mark.parametrize(("method", "path", "role"), JSON_ENDPOINTS)
def test_deeply_nested_json_is_400_malformed_json(
    client: FlaskClient, make_key: Callable[[str], dict[str, str]], method: str, path: str, role: str | None
) -> None:
    headers = {"Content-Type": "application/json", **(make_key(role) if role else {})}
    response = client.open(path, method=method, data=DEEP, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["code"] == "malformed_json"


def test_a_huge_console_page_number_is_no_500(agent_client: FlaskClient) -> None:  # noqa: F811
    response = agent_client.get("/support", query_string={"q": "jane", "page": "9" * 2000})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("DELETE", "/api/v1/admin/api-keys/%00", "admin"),
        ("GET", "/api/v1/support/accounts/ja%00ne", "agent"),
        ("GET", "/api/v1/support/accounts/ja%00ne/events", "agent"),
        ("POST", "/api/v1/support/accounts/ja%00ne/unlock", "agent"),
        ("GET", "/api/v1/support/accounts?q=ja%00ne", "agent"),
        ("GET", "/api/v1/password-resets/abc%00def", None),
        ("GET", "/reset-password/abc%00def", None),
        ("GET", "/language/f%00r", None),
    ],
)
def test_nul_in_a_path_or_query_is_400(
    client: FlaskClient, make_key: Callable[[str], dict[str, str]], method: str, path: str, role: str | None
) -> None:
    response = client.open(path, method=method, headers=make_key(role) if role else {})
    assert response.status_code == 400, response.get_data(as_text=True)


def test_nul_in_a_console_query_is_400(agent_client: FlaskClient, app: Flask) -> None:  # noqa: F811
    assert agent_client.get("/support", query_string={"q": "ja\x00ne"}).status_code == 400
    assert agent_client.get("/support/accounts/ja%00ne").status_code == 400


@pytest.mark.parametrize("path", ["/healthz?x=ja%00ne", "/healthz?ja%00ne=x", "/reset-password?username=%00"])
def test_nul_in_any_query_is_refused_before_the_view(client: FlaskClient, path: str) -> None:
    # /healthz reads no query at all: the refusal comes from the check every request passes.
    response = client.get(path)
    assert response.status_code == 400, response.get_data(as_text=True)


def test_a_request_without_a_query_string_passes_the_check(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz?").status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/v1/password-resets/" + "a" * 3000, "/api/v1/support/accounts?q=" + "j" * 3000, "/api/v1/nowhere/" + "x" * 9000]
)
def test_an_address_too_long_is_a_414_problem(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 414, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "uri_too_long"


def test_an_address_too_long_is_a_414_page_in_the_pages_words(client: FlaskClient) -> None:
    response = client.get("/reset-password?username=" + "j" * 3000)
    assert (response.status_code, response.mimetype) == (414, "text/html")
    assert "This address is too long to be one of ours." in response.get_data(as_text=True)


def test_the_longest_address_allowed_is_answered_as_usual(client: FlaskClient) -> None:
    path = "/healthz?x="
    assert client.get(path + "y" * (2048 - len(path) + 1)).status_code == 200
    assert client.get(path + "y" * (2048 - len(path) + 2)).status_code == 414
