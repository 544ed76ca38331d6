"""Reading a JSON request body and checking it against the schema its view documents.

The schema given to `@documented(request=...)` is the only statement of what a body must be:
`validated_body()` reads the JSON and runs the validator compiled from that schema, and turns
what the validator finds into the answers the API has always given (a 415 or a 400
`malformed_json` for what is not a JSON object, a 400 `validation_failed` naming each field).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from flask import request
from jsonschema import Draft202012Validator
from jsonschema import ValidationError as SchemaError

from service.api.openapi import NOT_BLANK, ONE_LINE, OPERATIONS, STORABLE, Operation
from service.platform.errors import FieldError, ServiceError, ValidationFailed


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"
    title = "Send the body as application/json"


class MalformedJson(ServiceError):
    status = 400
    code = "malformed_json"
    title = "The body is not valid JSON"


def json_object() -> dict[str, Any]:
    """The request's JSON object, or a 415/400 problem explaining what is wrong with it."""
    if not request.is_json:
        raise UnsupportedMediaType("Set Content-Type: application/json and send a JSON object.")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # Nesting deeper than the parser's recursion limit (`[[[[...`) is not a body we accept.
        body = None
    if body is None:
        raise MalformedJson("The body could not be parsed as JSON.")
    if not isinstance(body, dict):
        raise MalformedJson("The body must be a JSON object, such as {\"username\": \"jane\"}.")
    return body


def current_operation() -> Operation:
    """What the view answering this request documented about itself."""
    endpoint = request.endpoint or ""
    operation = OPERATIONS.get(endpoint.rsplit(".", 1)[-1])
    if operation is None:
        raise LookupError(f"{endpoint} is not documented")
    return operation


def validated_body() -> dict[str, Any]:
    """This request's body once it fits the schema its view documents; a 4xx problem otherwise.

    The view calls it after its key and rate limits have been checked, so those answer first.
    Fields the schema leaves optional may be absent: read them with `.get()`.
    """
    operation = current_operation()
    if operation.request_validator is None:
        raise LookupError(f"{request.endpoint} documents no request body")
    if not operation.request_required and not request.get_data():
        return {}
    body = json_object()
    failure = validation_failure(operation.request_validator, body)
    if failure is not None:
        raise failure
    return body


# --- from the validator's findings to the API's field errors -------------------------------------

# Which finding about a field is reported when it has several: the order in which a person
# fixes them (send it, as text, not too long, not blank or too short, without unusable
# characters, one of the choices).
REQUIRED, WRONG_TYPE, TOO_LONG, TOO_SHORT, UNSTORABLE, NOT_A_CHOICE, OTHER = range(7)

TYPE_WORDS = {
    "string": "a string",
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "array": "a list",
    "object": "an object",
}
# Findings about the body as a whole: only a call that changes what it is sent (PATCH) refuses
# fields it does not know, or an empty body.
SHAPE_KEYWORDS = ("additionalProperties", "minProperties")


class Finding(NamedTuple):
    """What is wrong with one field: how soon to report it, and in which words."""

    field: str
    rank: int
    message: str
    detail: str = ""  # the problem's detail when this finding comes first, if not the message


def validation_failure(validator: Draft202012Validator, body: dict[str, Any]) -> ValidationFailed | None:
    """The 400 that tells the caller everything wrong with the body, or None if it fits."""
    findings = list(validator.iter_errors(body))
    if not findings:
        return None
    root = validator.schema if isinstance(validator.schema, Mapping) else {}
    shape = [finding for finding in findings if finding.validator in SHAPE_KEYWORDS and not finding.path]
    if shape:
        properties = list(_object_schema(root, shape[0]).get("properties", {}))
        unknown = sorted(set(body) - set(properties))
        return ValidationFailed(
            f"Send any of {', '.join(properties)}.",
            errors=[FieldError(name, f"{name} cannot be changed here.") for name in unknown],
        )
    worst: dict[str, Finding] = {}
    place: dict[str, int] = {}
    for finding in findings:
        order = list(_object_schema(root, finding).get("properties", {}))
        for found in _field_findings(finding):
            place[found.field] = order.index(found.field) if found.field in order else len(order)
            if found.field not in worst or found.rank < worst[found.field].rank:
                worst[found.field] = found
    ordered = sorted(worst.values(), key=lambda found: (place[found.field], found.field))
    return ValidationFailed(
        ordered[0].detail or ordered[0].message, errors=[FieldError(found.field, found.message) for found in ordered]
    )


def _object_schema(root: Mapping[str, Any], finding: SchemaError) -> Mapping[str, Any]:
    """The object schema (the body's, or one branch of it) whose keyword made the finding."""
    path = list(finding.absolute_schema_path)
    end = path.index("properties") if "properties" in path else len(path) - 1
    schema: Any = root
    for step in path[:end]:
        schema = schema[step]
    return schema if isinstance(schema, Mapping) else {}


def _field_findings(finding: SchemaError) -> Iterable[Finding]:
    """What the validator's finding says about each field it concerns."""
    keyword = finding.validator
    expected: Any = finding.validator_value
    value: Any = finding.instance
    if keyword == "required":
        for name in expected:
            if name not in value:
                yield Finding(name, REQUIRED, f"{name} is required.")
        return
    if not finding.path:
        return
    name = str(finding.path[0])
    if keyword == "type" and value is None:
        yield Finding(name, REQUIRED, f"{name} is required.")
    elif keyword == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(TYPE_WORDS.get(each, each) for each in types if each != "null")
        yield Finding(name, WRONG_TYPE, f"{name} must be {words}.")
    elif keyword == "maxLength":
        yield Finding(name, TOO_LONG, f"{name} must be at most {expected} characters.")
    elif (keyword == "minLength" and expected == 1) or (keyword == "pattern" and expected == NOT_BLANK):
        yield Finding(name, TOO_SHORT, f"{name} must not be empty.")
    elif keyword == "minLength":
        yield Finding(name, TOO_SHORT, f"{name} must be at least {expected} characters.")
    elif keyword == "pattern" and expected == STORABLE:
        yield Finding(name, UNSTORABLE, f"{name} contains characters that cannot be used (NUL or a lone surrogate).")
    elif keyword == "pattern" and expected == ONE_LINE:
        yield Finding(name, UNSTORABLE, f"{name} must be one line, without control characters.")
    elif keyword in ("enum", "const"):
        choices = [str(choice) for choice in (expected if keyword == "enum" else [expected])]
        spelt = choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"
        yield Finding(name, NOT_A_CHOICE, f"Choose {spelt}.", detail=f"{name} must be {spelt}.")
    else:
        yield Finding(name, OTHER, f"{name} is not valid.")
