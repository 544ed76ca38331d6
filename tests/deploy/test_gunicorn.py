"""End to end in a real deployment shape: gunicorn with two workers, the CLI, SMTP, over HTTP."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, SmtpSink
from tests.processes import call, flask, free_port, served_by_gunicorn, service_env

pytestmark = pytest.mark.slow

MAIL_WAIT_SECONDS = 15


@pytest.fixture
def gunicorn(tmp_path: Path, smtp: SmtpSink) -> Iterator[dict[str, Any]]:
    """A migrated database with an account and a client key, served by gunicorn; stopped after."""
    port = free_port()
    env = service_env(tmp_path, port, smtp)
    flask(env, "db", "upgrade")
    flask(env, "users", "create", "jane", "jane@example.com", "--password-stdin", stdin=STRONG_PASSWORD + "\n")
    key = flask(env, "apikeys", "create", "website", "--role", "client").strip().splitlines()[-1]
    with served_by_gunicorn(env, port, tmp_path / "gunicorn.log") as base:
        yield {"base": base, "key": key, "log": tmp_path / "gunicorn.log"}


def wait_for_mail(smtp: SmtpSink, address: str, count: int) -> list[Any]:
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while len(smtp.to(address)) < count:
        assert time.monotonic() < deadline, f"no mail to {address} within {MAIL_WAIT_SECONDS} s"
        time.sleep(0.1)
    return smtp.to(address)


def test_a_reset_over_real_http_through_gunicorn_with_inline_dispatch(
    gunicorn: dict[str, Any], smtp: SmtpSink
) -> None:
    base, bearer = gunicorn["base"], {"Authorization": f"Bearer {gunicorn['key']}"}

    status, body = call("POST", f"{base}/api/v1/password-resets", {"username": "jane"})
    assert (status, body["status"]) == (202, "accepted")

    [mail] = wait_for_mail(smtp, "jane@example.com", 1)
    match = re.search(re.escape(base) + r"/reset-password/(\S+)", SmtpSink.text_of(mail))
    assert match, SmtpSink.text_of(mail)
    token = match.group(1)

    assert call("GET", f"{base}/api/v1/password-resets/{token}")[0] == 200
    confirm = f"{base}/api/v1/password-resets/confirm"
    assert call("POST", confirm, {"token": token, "new_password": OTHER_STRONG_PASSWORD})[0] == 204

    verify = f"{base}/api/v1/auth/verify"
    status, body = call("POST", verify, {"username": "jane", "password": OTHER_STRONG_PASSWORD}, bearer)
    assert status == 200 and body["username"] == "jane" and body["must_change_password"] is False
    status, body = call("POST", verify, {"username": "jane", "password": STRONG_PASSWORD}, bearer)
    assert (status, body["code"]) == (401, "invalid_credentials")

    # The inline dispatcher also sends the change notice, and the link is now spent.
    notices = wait_for_mail(smtp, "jane@example.com", 2)
    assert notices[1]["Subject"] == "Your password was changed"
    status, body = call("POST", confirm, {"token": token, "new_password": "one more strong passphrase"})
    assert (status, body["code"]) == (410, "token_used")

    # The access log (JSON lines) names the route: the live token never reached it.
    log = gunicorn["log"].read_text()
    assert token not in log
    access = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"method"' in line]
    assert any(entry["method"] == "GET" and entry["path"] == "/api/v1/password-resets/<token>" for entry in access)
