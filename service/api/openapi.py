"""The API's OpenAPI 3.1 description, built from the views themselves.

Each view carries its own schemas through `@documented(...)`; the request schema is also what
checks the body (`service.api.body.validated_body`), with a validator compiled here once per
call, so the document states every rule a body must follow. `openapi_document(app)` walks the
app's routes under /api/v1 and assembles what they recorded with apispec, adding the Bearer
scheme, the problem answers and the webhooks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from apispec import APISpec
from flask import Flask
from jsonschema import Draft202012Validator

from service.access.apikeys import role_allows
from service.models import API_ROLES

V = TypeVar("V", bound=Callable[..., Any])

API_PREFIX = "/api/v1"
PROBLEM_TYPE = "application/problem+json"

# What each error code means, with its status: the codes the contract names, and the ones the
# body reader and Flask itself answer with.
ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,
    "invalid_input": 400,
    "malformed_json": 400,
    "validation_failed": 400,
    "weak_password": 400,
    "token_invalid": 400,
    "invalid_credentials": 401,
    "unauthorized": 401,
    "forbidden": 403,
    "account_frozen": 403,
    "account_not_found": 404,
    "api_key_not_found": 404,
    "not_found": 404,
    "username_taken": 409,
    "no_email_on_file": 409,
    "conflict": 409,
    "token_expired": 410,
    "token_used": 410,
    "payload_too_large": 413,
    "uri_too_long": 414,
    "unsupported_media_type": 415,
    "rate_limited": 429,
}

# Every call may meet these: NUL in the path or query, a path that does not route, a body over
# the limit, an address over the limit.
ALWAYS = ("invalid_input", "not_found", "payload_too_large", "uri_too_long")
# A call that reads a JSON body.
JSON_BODY = ("malformed_json", "validation_failed", "unsupported_media_type")
# A call that needs an API key.
KEYED = ("unauthorized", "forbidden")


@dataclass(frozen=True)
class Operation:
    """What a view says about itself: the words, the bodies and the errors it can answer."""

    summary: str
    description: str
    request: dict[str, Any] | None
    request_required: bool
    responses: dict[int, dict[str, Any] | None]
    errors: tuple[str, ...]
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag: str = ""
    response_type: str = "application/json"
    # The request schema compiled (Draft 2020-12, the dialect of OpenAPI 3.1): what checks the body.
    request_validator: Draft202012Validator | None = field(default=None, compare=False, repr=False)


# Keyed by the view function's name, which is also its endpoint within the API blueprint.
OPERATIONS: dict[str, Operation] = {}


def documented(
    summary: str,
    *,
    description: str = "",
    request: dict[str, Any] | None = None,
    request_required: bool = True,
    responses: Mapping[int, dict[str, Any] | None],
    errors: Iterable[str] = (),
    parameters: Mapping[str, dict[str, Any]] | None = None,
    query: Mapping[str, dict[str, Any]] | None = None,
    tag: str = "",
    response_type: str = "application/json",
) -> Callable[[V], V]:
    """Record the view's part of the document; the view itself is left as it is.

    Put it under the route decorator and above `require_role`, whose role it reads. The
    `request` schema is compiled here into the validator that `validated_body()` runs, which
    the view calls itself so that its key and rate limits answer before its body does.
    """

    def decorator(view: V) -> V:
        role = view.__dict__.get("required_role")
        codes = [*ALWAYS, *(KEYED if role else ()), *(JSON_BODY if request else ()), *errors]
        unknown = [code for code in codes if code not in ERROR_STATUS]
        if unknown:
            raise ValueError(f"{view.__name__}: unknown error codes {unknown}")
        request_validator = None
        if request is not None:
            Draft202012Validator.check_schema(request)
            request_validator = Draft202012Validator(request)
        OPERATIONS[view.__name__] = Operation(
            summary=summary,
            description=description,
            request=request,
            request_required=request_required,
            responses=dict(responses),
            errors=tuple(dict.fromkeys(codes)),
            parameters=dict(parameters or {}),
            query=dict(query or {}),
            tag=tag or view.__module__.rsplit(".", 1)[-1],
            response_type=response_type,
            request_validator=request_validator,
        )
        view.__dict__["documented_role"] = role
        return view

    return decorator


# --- schema helpers, so that the views' schemas read short ----------------------------------------

STRING: dict[str, Any] = {"type": "string"}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
DATE_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
NULLABLE_DATE_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
INTEGER: dict[str, Any] = {"type": "integer"}


# Every text field: at most this long, and nothing a database column cannot hold (NUL, which
# PostgreSQL refuses, or a lone surrogate, which UTF-8 cannot encode). Patterns are written so
# that Python's `re` (which checks them here) and ECMA-262 with Unicode read them the same way.
FIELD_MAX_LENGTH = 1000
STORABLE = r"^[^\u0000\ud800-\udfff]*$"
# A required field holds one character that is not whitespace: exactly what `str.strip()`
# removes, spelt out, since `\s` differs between Python and ECMA-262.
NOT_BLANK = r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

# One line of text (a ticket number, a note, a reason): storable, and without line breaks or
# other control characters (C0, DEL, C1, U+2028 and U+2029), which would start a new line in
# the mail, log or export the text is written into. It ends with `(?![\s\S])`, not `$`: Python's
# `$` also matches before a last line feed, so `$` would let "T-1\n" through.
ONE_LINE = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029\ud800-\udfff]*(?![\s\S])"
ONE_LINE_TEXT: dict[str, Any] = {"pattern": ONE_LINE}


def required_text(max_length: int = FIELD_MAX_LENGTH) -> dict[str, Any]:
    """A string that must be there, not blank, at most `max_length` characters, storable."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": STORABLE, "allOf": [{"pattern": NOT_BLANK}]}


def optional_text(max_length: int = FIELD_MAX_LENGTH) -> dict[str, Any]:
    """A string or null (or left out), at most `max_length` characters, storable."""
    return {"type": ["string", "null"], "maxLength": max_length, "pattern": STORABLE}


def body(required: Iterable[str], optional: Iterable[str] = (), **special: dict[str, Any]) -> dict[str, Any]:
    """A JSON object body of text fields: the required ones not blank, the optional ones nullable.

    `special` adds keywords to a field (an `enum`, say) on top of those of its kind.
    """
    required = tuple(required)
    properties: dict[str, Any] = {}
    for name in required:
        properties[name] = {**required_text(), **special.get(name, {})}
    for name in optional:
        properties[name] = {**optional_text(), **special.get(name, {})}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def obj(required: Mapping[str, dict[str, Any]], optional: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """An answer's object: these properties always present; more may be added later."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


def ref(name: str) -> dict[str, Any]:
    """A reference to one of the document's component schemas."""
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "An RFC 9457 problem document; `code` is the machine-readable reason.",
        "properties": {
            "type": STRING,
            "title": STRING,
            "status": INTEGER,
            "detail": STRING,
            "code": STRING,
            "errors": {
                "type": "array",
                "items": obj({"field": STRING, "message": STRING}),
            },
        },
        "required": ["type", "title", "status", "detail", "code"],
    },
    "Account": obj(
        {
            "username": STRING,
            "email": NULLABLE_STRING,
            "status": STRING,
            "language": NULLABLE_STRING,
            "full_name": NULLABLE_STRING,
            "phone": NULLABLE_STRING,
            "must_change_password": BOOLEAN,
            "created_at": DATE_TIME,
            "password_changed_at": NULLABLE_DATE_TIME,
        }
    ),
    "AccountSummary": obj(
        {
            "username": STRING,
            "email": NULLABLE_STRING,
            "status": STRING,
            "frozen": BOOLEAN,
            "frozen_reason": NULLABLE_STRING,
            "full_name": NULLABLE_STRING,
            "phone": NULLABLE_STRING,
            "created_at": DATE_TIME,
        }
    ),
    "Event": obj(
        {
            "at": DATE_TIME,
            "type": STRING,
            "actor": NULLABLE_STRING,
            "ip": NULLABLE_STRING,
            "details": {"type": ["object", "null"]},
        }
    ),
}


def _openapi_path(rule: str) -> tuple[str, list[str]]:
    """`/api/v1/a/<path:token>` as `/api/v1/a/{token}`, with its parameter names."""
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        names.append(match.group(2))
        return "{" + match.group(2) + "}"

    return re.sub(r"<(?:(\w+):)?(\w+)>", replace, rule), names


def _problem_responses(codes: Iterable[str]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_STATUS[code], []).append(code)
    responses: dict[str, Any] = {}
    for status, status_codes in sorted(by_status.items()):
        schema = {"allOf": [ref("Problem"), {"properties": {"code": {"enum": status_codes}}}]}
        response: dict[str, Any] = {
            "description": "A problem; `code` is one of " + ", ".join(f"`{code}`" for code in status_codes) + ".",
            "content": {PROBLEM_TYPE: {"schema": schema}},
        }
        if status == 429:
            response["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": INTEGER}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": STRING}}
        responses[str(status)] = response
    return responses


def _operation(operation: Operation, role: str | None, path_names: list[str], endpoint: str) -> dict[str, Any]:
    description = operation.description
    if role:
        allowed = [name for name in API_ROLES if role_allows(name, role)]
        description = (f"Needs an API key with the `{role}` role (roles allowed: {', '.join(allowed)}). " + description).strip()
    answer: dict[str, Any] = {
        "operationId": endpoint,
        "summary": operation.summary,
        "description": description,
        "tags": [operation.tag],
        "security": [{"bearer": [role]}] if role else [],
    }
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": operation.parameters.get(name, {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}),
        }
        for name in path_names
    ]
    parameters += [
        {"name": name, "in": "query", "required": bool(schema.pop("required", False)), "schema": schema}
        for name, schema in ((name, dict(schema)) for name, schema in operation.query.items())
    ]
    if parameters:
        answer["parameters"] = parameters
    if operation.request is not None:
        answer["requestBody"] = {
            "required": operation.request_required,
            "content": {"application/json": {"schema": operation.request}},
        }
    responses: dict[str, Any] = {}
    for status, schema in operation.responses.items():
        if schema is None:
            responses[str(status)] = {"description": "Done; no body."}
        else:
            responses[str(status)] = {"description": "Done.", "content": {operation.response_type: {"schema": schema}}}
    responses.update(_problem_responses(operation.errors))
    answer["responses"] = responses
    return answer


def _webhooks(events: Iterable[str]) -> dict[str, Any]:
    """One entry per event the service posts, each with the payload the receiver gets."""
    hooks: dict[str, Any] = {}
    for event in events:
        payload = {
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "Also sent as the `webhook-id` header; the same on a retry."},
                "type": {"const": event},
                "timestamp": DATE_TIME,
                "data": obj(
                    {
                        "username": STRING,
                        "password_changed_at": NULLABLE_DATE_TIME,
                        "actor": {
                            "type": "string",
                            "description": "`self` (the customer), `key:<name>` (an API key), `agent:<name>`, `cli` or `system`.",
                        },
                        "details": {
                            "type": "object",
                            "description": "What the action recorded (ticket, note, verified_by, method, reason, via); never a secret.",
                        },
                    }
                ),
            },
            "required": ["id", "type", "timestamp", "data"],
        }
        hooks[event] = {
            "post": {
                "summary": f"`{event}`",
                "description": (
                    "Posted to each of `WEBHOOK_URLS`, signed the Standard Webhooks way (`webhook-id`, "
                    "`webhook-timestamp`, `webhook-signature` with `WEBHOOK_SECRET`); retried with backoff until "
                    "the receiver answers 2xx."
                ),
                "requestBody": {"required": True, "content": {"application/json": {"schema": payload}}},
                "responses": {"2XX": {"description": "Received; any other answer is retried later."}},
            }
        }
    return hooks


def api_rules(app: Flask) -> list[tuple[str, str, str]]:
    """Every (path rule, method, endpoint) the app serves under /api/v1."""
    return [
        (rule.rule, method, rule.endpoint)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(API_PREFIX + "/")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    ]


def openapi_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's calls under /api/v1 and of its webhooks."""
    spec = APISpec(
        title="resetdesk API",
        version="1",
        openapi_version="3.1.0",
        info={
            "description": (
                "Account and password-reset calls for a website's login page and backend, and for support "
                "tools. Errors are `application/problem+json` (RFC 9457) with a machine-readable `code`."
            )
        },
    )
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    spec.components.security_scheme(
        "bearer",
        {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An API key made with `flask --app wsgi apikeys create NAME --role client|agent|admin`, sent as "
                "`Authorization: Bearer <key>`. Roles: `client` (the website's backend), `agent` (support tools), "
                "`admin` (everything). A missing or wrong key is 401 `unauthorized`; a key whose role does not "
                "allow the call is 403 `forbidden`."
            ),
        },
    )
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, endpoint in api_rules(app):
        operation = OPERATIONS.get(endpoint.rsplit(".", 1)[-1])
        if operation is None:
            continue  # left out on purpose: the test that compares routes and document fails
        view = app.view_functions[endpoint]
        path, names = _openapi_path(rule)
        paths.setdefault(path, {})[method.lower()] = _operation(
            operation, view.__dict__.get("documented_role"), names, endpoint
        )
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["webhooks"] = _webhooks(app.config["WEBHOOK_EVENTS"])
    return document
