"""Request bodies are checked by the schemas the document publishes: every constraint the
document states for a body is refused with a 400 `validation_failed` naming the field, in the
API's own words; and a schema changed in `@documented` changes what the call accepts."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator

from service.api.openapi import NOT_BLANK, ONE_LINE, OPERATIONS, STORABLE, body, documented
from service.platform.text import is_one_line, is_storable

PATTERN_MESSAGES = {
    NOT_BLANK: "{name} must not be empty.",
    STORABLE: "{name} contains characters that cannot be used (NUL or a lone surrogate).",
    ONE_LINE: "{name} must be one line, without control characters.",
}
# Values tried against a property's patterns: a blank one, a NUL, a lone surrogate, a line break.
PATTERN_BREAKERS = ["   ", "a\x00b", "a\ud800b", "a\r\nb"]
JSON_TYPES = {str: "string", bool: "boolean", int: "integer", list: "array", dict: "object"}


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"RATELIMIT_ENABLED": False}


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    served: dict[str, Any] = client.get("/api/v1/openapi.json").get_json()
    return served


def json_type(value: Any) -> str:
    return "null" if value is None else JSON_TYPES[type(value)]


def forms(schema: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None, bool]]:
    """Each object form a body may take: (its schema, the `if` that selects it, whether it must hold)."""
    if "if" in schema:
        yield schema["then"], schema["if"], True
        yield schema["else"], schema["if"], False
    else:
        yield schema, None, True


def valid_value(property_schema: dict[str, Any]) -> Any:
    return property_schema["enum"][0] if "enum" in property_schema else "x"


def broken_bodies(form: dict[str, Any], base: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str, str]]:
    """(what, body, field, message) for each way of breaking one documented constraint of one field."""
    required = form.get("required", [])
    for name, prop in form["properties"].items():
        allowed = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        wrong = next(value for value in (12345, "text", True, ["x"], {"x": 1}) if json_type(value) not in allowed)
        yield f"{name} of the wrong type", {**base, name: wrong}, name, f"{name} must be a {allowed[0]}."
        if name in required:
            yield f"{name} left out", {key: value for key, value in base.items() if key != name}, name, f"{name} is required."
            yield f"{name} null", {**base, name: None}, name, f"{name} is required."
        if "maxLength" in prop:
            yield (
                f"{name} too long", {**base, name: "x" * (prop["maxLength"] + 1)}, name,
                f"{name} must be at most {prop['maxLength']} characters.",
            )
        for pattern in [prop.get("pattern"), *(part.get("pattern") for part in prop.get("allOf", []))]:
            if pattern is None:
                continue
            breaker = next(value for value in PATTERN_BREAKERS if not re.search(pattern, value))
            yield f"{name} not matching {pattern}", {**base, name: breaker}, name, PATTERN_MESSAGES[pattern].format(name=name)
        if "enum" in prop:
            choices = prop["enum"]
            yield (
                f"{name} not a choice", {**base, name: "none-of-these"}, name,
                f"Choose {', '.join(choices[:-1])} or {choices[-1]}.",
            )


def test_every_documented_constraint_of_every_body_is_enforced(
    client: FlaskClient, make_key: Any, document: dict[str, Any]
) -> None:
    admin = make_key("admin")  # admin may call everything, so every call reaches its body
    checked, failures = 0, []
    for path, by_method in document["paths"].items():
        for method, operation in by_method.items():
            if "requestBody" not in operation:
                continue
            url = re.sub(r"\{\w+\}", "nobody", path)
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            for form, condition, holds in forms(schema):
                base = {name: valid_value(form["properties"][name]) for name in form.get("required", [])}
                if schema.get("minProperties") and not base:
                    base = {next(iter(form["properties"])): "x"}
                assert Draft202012Validator(schema).is_valid(base), (path, base)
                cases: list[tuple[str, dict[str, Any], str | None, str]] = list(broken_bodies(form, base))
                if schema.get("additionalProperties") is False:
                    cases.append(("an unknown field", {**base, "unknown": "x"}, "unknown", "unknown cannot be changed here."))
                if schema.get("minProperties"):
                    cases.append(("an empty body", {}, None, ""))
                for what, sent, field, message in cases:
                    if condition is not None and Draft202012Validator(condition).is_valid(sent) != holds:
                        continue  # that body is the other form, checked there
                    response = client.open(
                        url, method=method.upper(), data=json.dumps(sent), content_type="application/json", headers=admin
                    )
                    answer = response.get_json(silent=True) or {}
                    expected = None if field is None else [{"field": field, "message": message}]
                    checked += 1
                    if (response.status_code, answer.get("code"), answer.get("errors")) != (400, "validation_failed", expected):
                        failures.append(f"{method.upper()} {path}, {what}: {response.status_code} {answer}")
    assert checked > 150
    assert failures == [], "\n".join(failures)


def test_each_call_checks_its_body_with_the_schema_it_publishes(document: dict[str, Any]) -> None:
    published = {
        operation["operationId"].rsplit(".", 1)[-1]: operation["requestBody"]["content"]["application/json"]["schema"]
        for by_method in document["paths"].values()
        for operation in by_method.values()
        if "requestBody" in operation
    }
    assert len(published) >= 13
    for name, schema in published.items():
        operation = OPERATIONS[name]
        assert operation.request_validator is not None, name
        assert operation.request_validator.schema is operation.request, name
        assert operation.request == schema, name


def test_a_constraint_added_to_the_schema_is_enforced_with_no_change_to_the_view(client: FlaskClient) -> None:
    saved = OPERATIONS["request_password_reset"]

    def request_password_reset() -> None:  # stands for the view: `documented` keys what it records by name
        raise AssertionError("never called")

    tightened = body(["username"], ["language"])
    tightened["properties"]["username"]["maxLength"] = 5
    documented("Ask for a reset", request=tightened, responses={202: None})(request_password_reset)
    try:
        response = client.post("/api/v1/password-resets", json={"username": "jane-doe"})
        assert response.status_code == 400
        assert response.get_json()["errors"] == [{"field": "username", "message": "username must be at most 5 characters."}]
        assert client.post("/api/v1/password-resets", json={"username": "jane"}).status_code == 202
        served = client.get("/api/v1/openapi.json").get_json()
        request = served["paths"]["/api/v1/password-resets"]["post"]["requestBody"]["content"]["application/json"]
        assert request["schema"]["properties"]["username"]["maxLength"] == 5
    finally:
        OPERATIONS["request_password_reset"] = saved
    assert client.post("/api/v1/password-resets", json={"username": "jane-doe"}).status_code == 202


@pytest.mark.parametrize(
    ("sent", "errors"),
    [
        # `code` without `token`: the code form, and only its fields are asked for.
        ({"code": "123456"}, [("username", "username is required."), ("new_password", "new_password is required.")]),
        # With a token, the link form, even when the code form's fields are there too.
        (
            {"token": 5, "username": "jane", "code": "123456", "new_password": "x"},
            [("token", "token must be a string.")],
        ),
        ({}, [("token", "token is required."), ("new_password", "new_password is required.")]),
    ],
)
def test_the_confirm_call_reads_each_body_as_one_form(
    client: FlaskClient, sent: dict[str, Any], errors: list[tuple[str, str]]
) -> None:
    response = client.post("/api/v1/password-resets/confirm", json=sent)
    assert response.status_code == 400
    answer = response.get_json()
    assert [(error["field"], error["message"]) for error in answer["errors"]] == errors
    assert answer["detail"] == errors[0][1]


def test_the_patterns_mean_what_the_checks_meant() -> None:
    # The document's patterns against Python's own definitions, over every code point.
    not_blank, storable, one_line = re.compile(NOT_BLANK), re.compile(STORABLE), re.compile(ONE_LINE)
    for point in range(sys.maxunicode + 1):
        char = chr(point)
        assert bool(not_blank.search(char)) == (not char.isspace()), hex(point)
        assert bool(storable.search(char)) == is_storable(char), hex(point)
        assert bool(one_line.search(char)) == (is_storable(char) and is_one_line(char)), hex(point)
    assert storable.search("jane\U0001F600") and not storable.search("ja\x00ne\n")
    assert one_line.search("T-1 \U0001F600") and not one_line.search("T-1\n") and not one_line.search("T-1\r\n")


def test_a_field_nested_as_deep_as_the_parser_allows_is_a_400(client: FlaskClient) -> None:
    # The validator writes the refused value into its findings: a value nested right up to the
    # JSON parser's limit must still be a plain 400, on either side of that limit.
    codes = set()
    for depth in range(700, 1001, 5):
        raw = '{"username": ' + "[" * depth + "]" * depth + "}"
        response = client.post("/api/v1/password-resets", data=raw, content_type="application/json")
        assert response.status_code == 400, depth
        codes.add(response.get_json()["code"])
    assert codes == {"validation_failed", "malformed_json"}
