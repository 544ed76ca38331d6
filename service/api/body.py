"""Reading a JSON request body: the right content type, an object, and string fields."""

from __future__ import annotations

from typing import Any

from flask import request

from service.platform.errors import FieldError, ServiceError, ValidationFailed
from service.platform.text import is_storable

FIELD_MAX_LENGTH = 1000


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


def string_fields(
    body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The named string fields of a body; every problem is reported at once as field errors.

    Each required field is a non-empty string, each optional one a string or None.
    """
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name in (*required, *optional):
        value = body.get(name)
        if value is None:
            if name in required:
                errors.append(FieldError(name, f"{name} is required."))
            values[name] = None
        elif not isinstance(value, str):
            errors.append(FieldError(name, f"{name} must be a string."))
        elif len(value) > FIELD_MAX_LENGTH:
            errors.append(FieldError(name, f"{name} must be at most {FIELD_MAX_LENGTH} characters."))
        elif name in required and not value.strip():
            errors.append(FieldError(name, f"{name} must not be empty."))
        elif not is_storable(value):
            errors.append(FieldError(name, f"{name} contains characters that cannot be used (NUL or a lone surrogate)."))
        else:
            values[name] = value
    if errors:
        raise ValidationFailed(errors[0].message, errors=errors)
    return values
