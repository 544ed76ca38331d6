"""The service's own errors. Rules raise these; `errorhandlers` turns them into answers."""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one input field, in words a person can act on."""

    field: str
    message: str


class ServiceError(Exception):
    """Base of every error the service raises on purpose; each maps to one status and code."""

    status = 400
    code = "bad_request"
    title = _l("Bad request")

    def __init__(self, detail: str | None = None, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail or str(self.title))
        # Titles are translated lazily: a page shows them in its language, the API in English.
        self.detail = detail or self.title
        self.errors = errors or []


class ValidationFailed(ServiceError):
    code = "validation_failed"
    title = _l("Some fields are not valid")


class WeakPassword(ValidationFailed):
    code = "weak_password"
    title = _l("The new password is not accepted")


class InvalidCredentials(ServiceError):
    status = 401
    code = "invalid_credentials"
    title = _l("Wrong username or password")


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"
    title = _l("A valid API key is required")


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"
    title = _l("This key may not do that")


class AccountFrozen(ServiceError):
    status = 403
    code = "account_frozen"
    title = _l("This account is frozen")


class AccountNotFound(ServiceError):
    status = 404
    code = "account_not_found"
    title = _l("No such account")


class UsernameTaken(ServiceError):
    status = 409
    code = "username_taken"
    title = _l("That username is taken")


class NoEmailOnFile(ServiceError):
    status = 409
    code = "no_email_on_file"
    title = _l("The account has no email address")


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"
    title = _l("Too many attempts")

    def __init__(self, detail: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))


class TokenInvalid(ServiceError):
    status = 400
    code = "token_invalid"
    title = _l("This reset link is not valid")


class TokenExpired(ServiceError):
    status = 410
    code = "token_expired"
    title = _l("This reset link has expired")


class TokenUsed(ServiceError):
    status = 410
    code = "token_used"
    title = _l("This reset link has already been used")
