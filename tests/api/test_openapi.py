"""The API's own description: a valid OpenAPI 3.1 document covering every route under /api/v1,
with the roles the views check, the error codes the service raises, and the webhooks; and a
docs page for people that needs nothing from elsewhere."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from service.api.openapi import ERROR_STATUS, api_rules
from service.platform.errors import ServiceError


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    served: dict[str, Any] = response.get_json()
    return served


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method.upper()): operation
        for path, by_method in document["paths"].items()
        for method, operation in by_method.items()
    }


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_under_api_v1_is_in_the_document(app: Flask, document: dict[str, Any]) -> None:
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule), method) for rule, method, _ in api_rules(app)}
    assert len(routes) > 20
    assert routes - set(operations(document)) == set(), "routes missing from the OpenAPI document"
    assert set(operations(document)) - routes == set(), "the document describes routes that do not exist"


def test_a_route_without_its_description_is_noticed(app: Flask) -> None:
    from service.api import openapi

    saved = openapi.OPERATIONS.pop("verify_credentials")
    try:
        with app.test_request_context():
            document = openapi.openapi_document(app)
    finally:
        openapi.OPERATIONS["verify_credentials"] = saved
    assert "/api/v1/auth/verify" not in document["paths"]


def test_each_call_names_the_role_its_view_checks(document: dict[str, Any]) -> None:
    found = operations(document)
    assert found["/api/v1/auth/verify", "POST"]["security"] == [{"bearer": ["client"]}]
    assert found["/api/v1/support/accounts/{username}", "GET"]["security"] == [{"bearer": ["agent"]}]
    assert found["/api/v1/support/accounts/{username}/export", "GET"]["security"] == [{"bearer": ["admin"]}]
    assert found["/api/v1/password-resets", "POST"]["security"] == []
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    for (path, method), operation in found.items():
        if operation["security"]:
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_error_answers_are_problem_json_with_their_codes(document: dict[str, Any]) -> None:
    verify = operations(document)["/api/v1/auth/verify", "POST"]
    unauthorized = verify["responses"]["401"]["content"]["application/problem+json"]["schema"]
    assert unauthorized["allOf"][0] == {"$ref": "#/components/schemas/Problem"}
    assert set(unauthorized["allOf"][1]["properties"]["code"]["enum"]) == {"unauthorized", "invalid_credentials"}
    assert "rate_limited" in verify["responses"]["429"]["content"]["application/problem+json"]["schema"]["allOf"][1][
        "properties"]["code"]["enum"]
    assert verify["requestBody"]["content"]["application/json"]["schema"]["required"] == ["username", "password"]


def every_subclass(cls: type[ServiceError]) -> list[type[ServiceError]]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *every_subclass(direct))]


def test_the_document_knows_every_error_code_with_its_status() -> None:
    import service  # noqa: F401  (loads every error class the app raises)

    for error in every_subclass(ServiceError):
        assert ERROR_STATUS.get(error.code) == error.status, error


def test_every_webhook_event_has_its_payload(app: Flask, document: dict[str, Any]) -> None:
    assert set(document["webhooks"]) == set(app.config["WEBHOOK_EVENTS"])
    changed = document["webhooks"]["password.changed"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert changed["properties"]["type"] == {"const": "password.changed"}
    assert set(changed["properties"]["data"]["required"]) == {"username", "password_changed_at", "actor", "details"}


def test_the_docs_page_lists_every_call_with_assets_served_here(client: FlaskClient, document: dict[str, Any]) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for path, method in operations(document):
        assert f"{method} {path}" in html
    for event in document["webhooks"]:
        assert f'id="webhook-{event}"' in html
    assert "<script" not in html
    assets = re.findall(r'(?:href|src)="([^"#]+)"', html)
    assert assets
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the service"
        served = client.get(asset)
        served.close()
        assert served.status_code == 200, asset
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
