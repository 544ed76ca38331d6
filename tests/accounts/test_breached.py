"""Breached passwords: a new password is checked against Have I Been Pwned's range API, asked
with k-anonymity (only 5 hex characters of its SHA-1 leave), failing open and counted.

The API is a fake range server on 127.0.0.1, started by the tests: nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from service import create_app
from service.accounts.passwords import check_new_password, password_rules
from service.platform.config import PWNED_PASSWORDS_RANGE_URL, ConfigError, load_config
from service.platform.errors import WeakPassword
from service.platform.extensions import db
from service.platform.i18n import speaking
from tests.conftest import OTHER_STRONG_PASSWORD, PRODUCTION_SERVICES, STRONG_PASSWORD
from tests.conftest import test_settings as settings_for

# A password the local policy accepts (long, not common, hard to guess) that the fake lists as breached.
BREACHED = "violet submarine hums at dawn"
TIMEOUT = 0.5
METRIC = "resetdesk_pwned_password_checks_total"


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


@dataclass
class FakeRangeServer:
    """Have I Been Pwned's range API as far as the service uses it: GET /range/<5 hex>, answered
    with `SUFFIX:COUNT` lines for the hashes it holds, padded with zero-count lines when asked."""

    breached: set[str] = field(default_factory=set)
    status: int = 200
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    redirect_to: str = ""  # with a 3xx status: where the Location header sends the asker

    def answer(self, prefix: str, padding: bool) -> str:
        lines = [f"{digest[5:]}:{1234 + n}" for n, digest in enumerate(sorted(self.breached)) if digest[:5] == prefix]
        # Someone else's breached password under the same prefix, as a real range always has.
        lines.append(f"{'0' * 34}1:87")
        if padding:
            lines += [f"{n:035X}:0" for n in range(2, 40)]
        return "\r\n".join(lines)


@contextmanager
def serving(fake: FakeRangeServer) -> Iterator[FakeRangeServer]:
    """Run the fake on a port of loopback; its `url` says where."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.requests.append({"path": self.path, "headers": dict(self.headers)})
            if fake.delay:
                time.sleep(fake.delay)
            prefix = self.path.rsplit("/", 1)[-1]
            body = fake.answer(prefix, self.headers.get("Add-Padding") == "true").encode()
            try:
                self.send_response(fake.status)
                if fake.redirect_to:
                    self.send_header("Location", f"{fake.redirect_to}/{prefix}")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the service gave up waiting, as it should

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False  # a handler still sleeping (the timeout test) is not waited for
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}/range"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_range() -> Iterator[FakeRangeServer]:
    with serving(FakeRangeServer(breached={sha1_hex(BREACHED)})) as fake:
        yield fake


@pytest.fixture
def app_settings(fake_range: FakeRangeServer) -> dict[str, Any]:
    return {"PWNED_PASSWORDS_URL": fake_range.url, "PWNED_PASSWORDS_TIMEOUT": TIMEOUT}


def refusal(app: Flask, password: str, language: str = "en") -> str | None:
    """The message check_new_password refuses `password` with, or None when it takes it."""
    with app.app_context(), speaking(language):
        try:
            check_new_password(password, username="jane", email="jane@example.com")
        except WeakPassword as refused:
            return str(refused.errors[0].message)
    return None


def checks_counted(client: FlaskClient) -> dict[str, float]:
    """resetdesk_pwned_password_checks_total by outcome, as /metrics shows it."""
    text = client.get("/metrics").get_data(as_text=True)
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == METRIC
    }


# --- refused, accepted, and what leaves --------------------------------------------------------


def test_a_password_in_the_breached_range_is_refused_saying_why(app: Flask, client: FlaskClient) -> None:
    message = refusal(app, BREACHED)
    assert message is not None and "data breach" in message
    assert checks_counted(client) == {"breached": 1}


def test_the_refusal_is_in_french_for_a_french_reader(app: Flask) -> None:
    message = refusal(app, BREACHED, "fr")
    assert message is not None and "fuite de données" in message


def test_an_account_cannot_be_created_with_a_breached_password_over_the_api(
    app: Flask, client: FlaskClient, client_key: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/accounts", json={"username": "jane", "email": "jane@example.com", "password": BREACHED},
        headers=client_key,
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == "weak_password"
    assert body["errors"][0]["field"] == "password" and "data breach" in body["errors"][0]["message"]


def test_a_password_not_in_the_range_is_accepted(app: Flask, client: FlaskClient, fake_range: FakeRangeServer) -> None:
    assert refusal(app, STRONG_PASSWORD) is None
    assert len(fake_range.requests) == 1
    assert checks_counted(client) == {"not_breached": 1}


def test_a_padding_line_with_a_count_of_zero_is_no_breach(app: Flask, fake_range: FakeRangeServer) -> None:
    # Padding lines are random suffixes with a count of 0: even the password's own suffix there is no breach.
    digest = sha1_hex(OTHER_STRONG_PASSWORD)
    original = fake_range.answer
    fake_range.answer = lambda prefix, padding: original(prefix, padding) + f"\r\n{digest[5:]}:0"  # type: ignore[method-assign]
    assert refusal(app, OTHER_STRONG_PASSWORD) is None


def test_only_the_first_five_hex_characters_of_the_sha1_leave(app: Flask, fake_range: FakeRangeServer) -> None:
    refusal(app, BREACHED)
    [request] = fake_range.requests
    digest = sha1_hex(BREACHED)
    assert request["path"] == f"/range/{digest[:5]}"
    assert request["headers"]["Add-Padding"] == "true"
    # Nothing else of the password or its hash is in the request: not the suffix, not the password.
    sent = request["path"] + "".join(f"{name}: {value}\n" for name, value in request["headers"].items())
    assert digest[5:] not in sent.upper() and digest[5:].lower() not in sent
    assert BREACHED not in sent and "jane" not in sent


def test_the_password_is_checked_in_the_form_it_is_stored_in(app: Flask, fake_range: FakeRangeServer) -> None:
    # Typed on a keyboard that makes full-width letters, it is the same password once normalised (NFKC).
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in BREACHED)
    assert full_width != BREACHED and unicodedata.normalize("NFKC", full_width) == BREACHED
    assert refusal(app, full_width) is not None
    assert [request["path"] for request in fake_range.requests] == [f"/range/{sha1_hex(BREACHED)[:5]}"]


def test_a_password_the_local_policy_refuses_is_not_sent_at_all(app: Flask, fake_range: FakeRangeServer) -> None:
    assert refusal(app, "short") is not None
    assert fake_range.requests == []


# --- failing open --------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("trouble", ["timeout", "server_error", "refused"])
def test_a_slow_failing_or_missing_api_lets_the_password_through_and_is_counted(
    app: Flask, client: FlaskClient, fake_range: FakeRangeServer, trouble: str
) -> None:
    if trouble == "timeout":
        fake_range.delay = 3.0
    elif trouble == "server_error":
        fake_range.status = 500
    else:
        app.config["PWNED_PASSWORDS_URL"] = f"http://127.0.0.1:{closed_port()}/range"
    started = time.monotonic()
    # Listed as breached, but the API cannot say so: the password passes (the local list still applies).
    assert refusal(app, BREACHED) is None
    waited = time.monotonic() - started
    assert waited < TIMEOUT + 0.4, f"waited {waited:.2f} s with a timeout of {TIMEOUT} s"
    outcome = {"timeout": "timeout", "server_error": "bad_answer", "refused": "unreachable"}[trouble]
    assert checks_counted(client) == {outcome: 1}


def test_an_answer_that_is_no_range_is_let_through_as_a_bad_answer(
    app: Flask, client: FlaskClient, fake_range: FakeRangeServer
) -> None:
    fake_range.answer = lambda prefix, padding: "<html>Service unavailable</html>"  # type: ignore[method-assign]
    assert refusal(app, BREACHED) is None
    assert checks_counted(client) == {"bad_answer": 1}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_but_let_through_as_a_bad_answer(
    app: Flask, client: FlaskClient, fake_range: FakeRangeServer, status: int
) -> None:
    # A range API (or whatever answers in its name) could send the 5 hex characters, and the
    # service's request, anywhere: the service does not go.
    with serving(FakeRangeServer(breached={sha1_hex(BREACHED)})) as elsewhere:
        fake_range.status, fake_range.redirect_to = status, elsewhere.url
        assert refusal(app, BREACHED) is None
        assert len(fake_range.requests) == 1
        assert elsewhere.requests == []
    assert checks_counted(client) == {"bad_answer": 1}


# --- off unless set ------------------------------------------------------------------------------


@pytest.mark.parametrize("app_settings", [{"PWNED_PASSWORDS_URL": ""}])
def test_when_unset_nothing_is_asked_or_counted(app: Flask, client: FlaskClient, fake_range: FakeRangeServer) -> None:
    assert refusal(app, BREACHED) is None
    assert fake_range.requests == []
    assert checks_counted(client) == {}


def test_it_is_on_in_production_and_off_in_development_and_tests(tmp_path: Path) -> None:
    production = {
        "APP_ENV": "production", "SECRET_KEY": "k" * 40, "PUBLIC_BASE_URL": "https://account.example.com",
        "MAIL_SERVER": "smtp.example.com", "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:9/0",
    }
    assert PWNED_PASSWORDS_RANGE_URL == "https://api.pwnedpasswords.com/range"
    assert load_config(environ=production, instance_path=tmp_path)["PWNED_PASSWORDS_URL"] == PWNED_PASSWORDS_RANGE_URL
    # An operator can turn it off, or point it at a mirror of their own.
    assert load_config(environ={**production, "PWNED_PASSWORDS_URL": ""}, instance_path=tmp_path)["PWNED_PASSWORDS_URL"] == ""
    mirror = "https://pwned.internal.example/range/"
    assert load_config(environ={**production, "PWNED_PASSWORDS_URL": mirror}, instance_path=tmp_path)[
        "PWNED_PASSWORDS_URL"
    ] == mirror.rstrip("/")
    for env in ("development", "testing"):
        assert load_config(environ={"APP_ENV": env, "SECRET_KEY": "s"}, instance_path=tmp_path)["PWNED_PASSWORDS_URL"] == ""
    assert load_config(environ={"SECRET_KEY": "s"}, instance_path=tmp_path)["PWNED_PASSWORDS_TIMEOUT"] == 1.5


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PWNED_PASSWORDS_URL": "ftp://pwned.example/range"}, "PWNED_PASSWORDS_URL"),
        ({"PWNED_PASSWORDS_URL": "api.pwnedpasswords.com/range"}, "PWNED_PASSWORDS_URL"),
        ({"PWNED_PASSWORDS_TIMEOUT": "0"}, "PWNED_PASSWORDS_TIMEOUT"),
        ({"PWNED_PASSWORDS_TIMEOUT": "soon"}, "PWNED_PASSWORDS_TIMEOUT"),
    ],
)
def test_a_malformed_setting_stops_the_start(tmp_path: Path, environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(environ={"SECRET_KEY": "s", **environ}, instance_path=tmp_path)


def test_a_production_app_under_test_never_asks_the_real_api(tmp_path: Path) -> None:
    """Tests that build a production app take PRODUCTION_SERVICES, which points the check at a
    loopback port where nothing listens."""
    app = create_app(
        settings_for(f"sqlite:///{tmp_path / 'p.db'}", APP_ENV="production", PASSWORD_HASH_CHEAP=False, **PRODUCTION_SERVICES)
    )
    try:
        assert urlsplit(app.config["PWNED_PASSWORDS_URL"]).hostname == "127.0.0.1"
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_test_that_would_ask_the_real_api_fails_instead(app: Flask) -> None:
    app.config["PWNED_PASSWORDS_URL"] = PWNED_PASSWORDS_RANGE_URL
    with pytest.raises(pytest.fail.Exception, match="tests never leave the machine"):
        refusal(app, BREACHED)


@pytest.mark.parametrize("asked", [True, False], ids=["on", "off"])
def test_the_rules_shown_to_a_person_mention_breaches_only_when_they_are_checked(app: Flask, asked: bool) -> None:
    if not asked:
        app.config["PWNED_PASSWORDS_URL"] = ""
    with app.test_request_context("/reset-password/new"):
        rules = password_rules()
    assert any("data breach" in rule for rule in rules) is asked
