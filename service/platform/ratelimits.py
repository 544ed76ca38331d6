"""The rate limits on unauthenticated endpoints, per client address and per username.

Each limit is shared by the API call and the page that do the same thing, so switching
between them buys an attacker nothing. Limits are settings (Flask-Limiter's notation).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app, request
from werkzeug.exceptions import HTTPException

from service.platform.clients import client_rate_limit_key, submitted_email, submitted_username
from service.platform.extensions import limiter


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


reset_request_per_ip = limiter.shared_limit(
    _setting("RATELIMIT_RESET_PER_IP"), scope="reset-request-ip", key_func=client_rate_limit_key
)
reset_request_per_username = limiter.shared_limit(
    _setting("RATELIMIT_RESET_PER_USERNAME"), scope="reset-request-username", key_func=submitted_username
)
reminder_per_ip = limiter.shared_limit(
    _setting("RATELIMIT_REMINDER_PER_IP"), scope="reminder-ip", key_func=client_rate_limit_key
)
reminder_per_address = limiter.shared_limit(
    _setting("RATELIMIT_REMINDER_PER_ADDRESS"), scope="reminder-address", key_func=submitted_email
)
token_per_ip = limiter.shared_limit(_setting("RATELIMIT_TOKEN_PER_IP"), scope="token-ip", key_func=client_rate_limit_key)
page_per_ip = limiter.shared_limit(_setting("RATELIMIT_PAGES_PER_IP"), scope="page-ip", key_func=client_rate_limit_key)


def _not_a_code() -> bool:
    """Whether this request is not a username and a reset code: a link's confirmation (a token,
    no username), a page opened, or a body the view refuses anyway."""
    try:
        if request.is_json:
            body = request.get_json(silent=True)
            return not (isinstance(body, dict) and "code" in body and "token" not in body)
        return "code" not in request.form
    except (HTTPException, RecursionError):
        return True


# Wrong codes for one reset kill it (RESET_CODE_ATTEMPTS); this bounds the codes tried for one
# username over all its resets, whoever tries them and from however many addresses. The
# customer's links keep working while it holds.
code_per_username = limiter.shared_limit(
    _setting("RATELIMIT_CODE_PER_USERNAME"), scope="reset-code-username", key_func=submitted_username,
    methods=["POST"], exempt_when=_not_a_code,
)
