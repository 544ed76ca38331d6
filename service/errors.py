"""The service's own errors. Rules raise these; `errorhandlers` turns them into answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one input field, in words a person can act on."""

    field: str
    message: str


class ServiceError(Exception):
    """Base of every error the service raises on purpose; each maps to one status and code."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []


class ValidationFailed(ServiceError):
    code = "validation_failed"
    title = "Some fields are not valid"


class WeakPassword(ValidationFailed):
    code = "weak_password"
    title = "The new password is not accepted"


class InvalidCredentials(ServiceError):
    status = 401
    code = "invalid_credentials"
    title = "Wrong username or password"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"
    title = "A valid API key is required"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"
    title = "This key may not do that"


class AccountNotFound(ServiceError):
    status = 404
    code = "account_not_found"
    title = "No such account"


class UsernameTaken(ServiceError):
    status = 409
    code = "username_taken"
    title = "That username is taken"


class NoEmailOnFile(ServiceError):
    status = 409
    code = "no_email_on_file"
    title = "The account has no email address"


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"
    title = "Too many attempts"

    def __init__(self, detail: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))


class TokenInvalid(ServiceError):
    status = 400
    code = "token_invalid"
    title = "This reset link is not valid"


class TokenExpired(ServiceError):
    status = 410
    code = "token_expired"
    title = "This reset link has expired"


class TokenUsed(ServiceError):
    status = 410
    code = "token_used"
    title = "This reset link has already been used"
