"""The one place where errors become answers: problem+json under /api, a friendly page elsewhere."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

from service.platform.errors import RateLimited, ServiceError, Unauthorized
from service.platform.extensions import limiter

log = logging.getLogger(__name__)

# Machine-readable codes for the HTTP errors raised by Flask and Werkzeug themselves.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
}

FRIENDLY_TITLE = {
    400: _l("Bad request"),
    404: _l("Page not found"),
    405: _l("Not allowed"),
    413: _l("Too large"),
    414: _l("Address too long"),
    429: _l("Too many attempts"),
    500: _l("Something went wrong"),
}

FRIENDLY_DETAIL = {
    400: _l("The request could not be understood. Go back and try again."),
    404: _l("There is no page at this address."),
    405: _l("This page cannot be used that way."),
    413: _l("What you sent is too large."),
    414: _l("This address is too long to be one of ours. Check the link, or start again from the login page."),
    429: _l("Too many attempts. Please wait a little and try again."),
    500: _l("Something went wrong on our side. Please try again, or call customer service."),
}


def wants_problem_json() -> bool:
    """API callers get problem+json; people using pages get a page."""
    return request.path.startswith("/api/")


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": f"urn:resetdesk:problem:{code}",
        "title": str(title),
        "status": status,
        "detail": str(detail),
        "code": code,
    }
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    return response


def _answer(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response | tuple[str, int, dict[str, str]]:
    if wants_problem_json():
        return problem(status, code, title, detail, errors=errors, headers=headers)
    phone = current_app.config["CONTACT_PHONE"] if status == 429 and _for_customers() else None
    page = render_template("error.html", status=status, title=title, detail=detail, phone=phone)
    return page, status, headers or {}


def wait_in_words(seconds: int) -> str:
    """How long a wait is, as a person says it: `less than a minute`, `about 5 minutes`."""
    minutes = -(-seconds // 60)
    if seconds < 60:
        return str(_("less than a minute"))
    if minutes == 1:
        return str(_("about a minute"))
    if minutes <= 50:
        return str(_("about %(num)d minutes", num=minutes))
    hours = round(minutes / 60)
    if hours <= 1:
        return str(_("about an hour"))
    return str(_("about %(num)d hours", num=hours))


def _for_customers() -> bool:
    """Customers are offered the phone; agents and operators are not sent to call themselves."""
    return not request.path.startswith(("/support", "/api/v1/support", "/api/v1/admin"))


def rate_limited_detail(error: RateLimited) -> str:
    """The refusal, how long to wait in words, and (for customers) the phone number."""
    wait = wait_in_words(error.retry_after)
    if _for_customers():
        phone = current_app.config["CONTACT_PHONE"]
        advice = _("Please try again in %(wait)s, or call customer service at %(phone)s.", wait=wait, phone=phone)
    else:
        advice = _("Please try again in %(wait)s.", wait=wait)
    return f"{error.detail} {advice}"


def handle_service_error(error: ServiceError) -> Response | tuple[str, int, dict[str, str]]:
    headers: dict[str, str] = {}
    detail = error.detail
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
        detail = rate_limited_detail(error)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="resetdesk"'
    errors = [{"field": e.field, "message": e.message} for e in error.errors]
    return _answer(error.status, error.code, error.title, detail, errors=errors, headers=headers)


def handle_rate_limit_exceeded(error: RateLimitExceeded) -> Response | tuple[str, int, dict[str, str]]:
    current = limiter.current_limit
    retry_after = max(1, int(current.reset_at - time.time())) if current else 60
    return handle_service_error(
        RateLimited(_("Too many requests."), retry_after=retry_after)
    )


def handle_csrf_error(error: CSRFError) -> Response | tuple[str, int, dict[str, str]]:
    return _answer(
        400,
        "csrf_failed",
        _("This form has expired"),
        _("The form was missing its security token or it had expired. Go back, reload the page and try again."),
    )


def handle_http_exception(error: HTTPException) -> Response | tuple[str, int, dict[str, str]]:
    status = error.code or 500
    code = HTTP_CODES.get(status, "http_error")
    if wants_problem_json():
        title, detail = error.name, error.description
    else:
        title, detail = FRIENDLY_TITLE.get(status, error.name), FRIENDLY_DETAIL.get(status, error.name)
    allowed = getattr(error, "valid_methods", None)
    headers = {"Allow": ", ".join(allowed)} if allowed else None
    return _answer(status, code, title, detail or title, headers=headers)


def handle_untrusted_host(error: SecurityError) -> Response:
    # A refused Host leaves no URL adapter, so a page (which links its stylesheet) cannot be
    # rendered; a plain problem document needs no URLs.
    return problem(400, "untrusted_host", "Bad request", "This host name is not served here.")


def handle_internal_error(error: InternalServerError) -> Response | tuple[str, int, dict[str, str]]:
    # Flask has already logged the original exception with its trace; the caller sees none of it.
    return _answer(500, "internal_error", _("Internal error"), FRIENDLY_DETAIL[500])


def register_errorhandlers(app: Flask) -> None:
    """Map every error the service can raise to its answer."""
    app.register_error_handler(ServiceError, handle_service_error)
    app.register_error_handler(RateLimitExceeded, handle_rate_limit_exceeded)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(InternalServerError, handle_internal_error)
    app.register_error_handler(SecurityError, handle_untrusted_host)
    app.register_error_handler(HTTPException, handle_http_exception)
