"""Fixtures: an app per test on SQLite (and PostgreSQL when TEST_DATABASE_URL is set),
its client and CLI runner, and factories for accounts and API keys."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as email_policy
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from jinja2.bccache import Bucket, BytecodeCache
from sqlalchemy import inspect, text
from werkzeug.routing import Rule

from service import create_app
from service.access.apikeys import create_api_key
from service.accounts import breached
from service.accounts.records import create_account
from service.models import Account
from service.platform.clock import utcnow
from service.platform.extensions import db


def _share_url_builders() -> None:
    """Every test makes its own app, and Werkzeug compiles two URL builders (Python source,
    parsed and compiled) for each route of each app: two thirds of making an app, and most of a
    minute over the suite. A builder depends only on its route's parsed pattern, defaults and
    whether it appends unknown arguments; the route it serves is its first argument. So the
    tests share one builder per such key (the app in production compiles its routes once)."""
    compile_builder = getattr(Rule, "_compile_builder", None)
    if compile_builder is None:  # another Werkzeug: compile as it does
        return
    builders: dict[tuple[Any, ...], Any] = {}

    def shared_builder(rule: Rule, append_unknown: bool = True) -> Any:
        try:
            key = (tuple(rule._trace), repr(sorted((rule.defaults or {}).items())), append_unknown)
        except (AttributeError, TypeError):  # a rule this does not understand: its own builder
            return compile_builder(rule, append_unknown)
        if key not in builders:
            builders[key] = compile_builder(rule, append_unknown)
        return builders[key]

    Rule._compile_builder = shared_builder  # type: ignore[method-assign]


_share_url_builders()


class _SharedTemplateCode(BytecodeCache):
    """Jinja's compiled templates, kept in memory for every app of this test process: each app
    has its own Jinja environment, which compiled every template it rendered afresh (a tenth of
    the suite's time). Jinja keys a template's code by its name and checks the source's hash
    before using it; it does not check the environment's settings, which the code also
    depends on (autoescaping, the i18n extension's options). Every app here comes from
    `create_app`, which sets them alike: an app made any other way must not share this."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


def _share_template_code() -> None:
    shared = _SharedTemplateCode()
    create_environment = Flask.create_jinja_environment

    def with_shared_code(app: Flask) -> Any:
        environment = create_environment(app)
        environment.bytecode_cache = shared
        return environment

    Flask.create_jinja_environment = with_shared_code  # type: ignore[method-assign]


_share_template_code()

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")

# A password the policy accepts, used wherever a test needs "a good password".
STRONG_PASSWORD = "correct horse battery staple"
OTHER_STRONG_PASSWORD = "purple elephants juggle quietly"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(
                not TEST_DATABASE_URL, reason="TEST_DATABASE_URL is not set: no PostgreSQL to test against"
            ),
        ],
    ),
]

requires_redis = pytest.mark.skipif(
    not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set: no Redis to test against"
)


def test_settings(database_url: str, **overrides: Any) -> dict[str, Any]:
    """Settings for an app under test: fast hashes, no SMTP, mail dispatched by the test."""
    return {
        "APP_ENV": "testing",
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": database_url,
        "PUBLIC_BASE_URL": "http://localhost",
        "PASSWORD_HASH_CHEAP": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        "MAIL_SERVER": "",
        "OUTBOX_DISPATCH": "external",
        **overrides,
    }


# What production insists on beyond the secrets: an SMTP server and a shared rate-limit store;
# and what it asks by default: the breached-password range API, never the real one from a test.
# Nothing listens on port 9 of loopback, so a test that reaches them sees them down at once.
PRODUCTION_SERVICES: dict[str, Any] = {
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": 9,
    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:9/0",
    "PWNED_PASSWORDS_URL": "http://127.0.0.1:9/range",
}


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(autouse=True)
def breached_password_checks_stay_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a test's settings say, the breached-password check asks loopback only: a test
    that would ask another host (the real API) fails, in its own thread, saying so."""
    real_fetch = breached.fetch_range

    def loopback_only(url: str, timeout: float) -> tuple[breached.CheckOutcome | None, bytes]:
        host = urlsplit(url).hostname
        if host not in LOOPBACK_HOSTS:
            pytest.fail(f"a test asked {host} for a breached-password range: tests never leave the machine")
        return real_fetch(url, timeout)

    monkeypatch.setattr(breached, "fetch_range", loopback_only)


def hashed_username(username: str) -> str:
    """A name as the rate limits and the sign-in throttle key it under the tests' SECRET_KEY:
    a keyed hash, never the name."""
    from service.platform.sealing import username_hash

    app = create_app(test_settings("sqlite://"))
    with app.app_context():
        return username_hash(username)


def reset_postgresql(url: str) -> None:
    """Start from an empty schema, as if the database were new."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty database: a new SQLite file, or the test PostgreSQL wiped clean."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    reset_postgresql(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


@pytest.fixture
def app_settings() -> dict[str, Any]:
    """Overrides a test module can replace to configure its app."""
    return {}


@pytest.fixture(scope="session")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database with the models' schema, made once per test process: a test's
    database is a copy of it, a fraction of a millisecond where `create_all` takes over ten."""
    path = tmp_path_factory.mktemp("schema") / "schema.db"
    app = create_app(test_settings(f"sqlite:///{path}"))
    with app.app_context():
        db.create_all()
        db.engine.dispose()  # the last connection to close folds the WAL into the file
    return path


@pytest.fixture
def app(database_url: str, app_settings: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Flask]:
    database_file = Path(database_url.removeprefix("sqlite:///")) if database_url.startswith("sqlite:///") else None
    copied = database_file is not None and not database_file.exists()
    if copied:
        shutil.copyfile(request.getfixturevalue("sqlite_schema"), database_file)  # type: ignore[arg-type]
    app = create_app(test_settings(database_url, **app_settings))
    if not copied:
        with app.app_context():
            db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def make_account(app: Flask) -> Callable[..., Account]:
    """Create an account; returns it detached, with its id and username."""

    def make(
        username: str = "jane",
        email: str | None = "jane@example.com",
        password: str | None = STRONG_PASSWORD,
        password_hash: str | None = None,
    ) -> Account:
        with app.app_context():
            account = create_account(
                db.session,
                username=username,
                email=email,
                password=password if password_hash is None else None,
                password_hash=password_hash,
                actor="cli",
                now=utcnow(),
            )
            db.session.commit()
            db.session.refresh(account)
            db.session.expunge(account)
            return account

    return make


@pytest.fixture
def make_key(app: Flask) -> Callable[[str], dict[str, str]]:
    """Create an API key of a role; returns the Authorization header to send."""
    counter = iter(range(1_000_000))

    def make(role: str = "client") -> dict[str, str]:
        with app.app_context():
            _api_key, presented = create_api_key(db.session, f"{role}-{next(counter)}", role, now=utcnow())
            db.session.commit()
        return {"Authorization": f"Bearer {presented}"}

    return make


@pytest.fixture
def client_key(make_key: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return make_key("client")


class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives; it can go down and come back."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.messages: list[EmailMessage] = []
        self.greetings = 0  # EHLOs: one per connection a client opened
        self.delay = 0.0
        # Offered, as the mail servers a shop sends through do (RFC 2920); aiosmtpd reads
        # commands a line at a time, so it answers pipelined ones in order without saying so.
        self.pipelining = True
        self._controller: Any = None

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        self.greetings += 1
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        if self.delay:
            await asyncio.sleep(self.delay)
        self.messages.append(message_from_bytes(envelope.content, policy=email_policy))
        return "250 Message accepted"

    def start(self, **server: Any) -> None:
        """Listen on the sink's port; `server` goes to aiosmtpd (`tls_context=...` for STARTTLS,
        `ssl_context=...` for TLS from the first byte)."""
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **server)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    @staticmethod
    def text_of(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("plain",)).get_content()


SinkType = TypeVar("SinkType", bound=SmtpSink)


@contextmanager
def serving(sink: SinkType) -> Iterator[SinkType]:
    """`sink` listening for the block's length."""
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with serving(SmtpSink()) as sink:
        yield sink


def smtp_settings(sink: SmtpSink) -> dict[str, Any]:
    """Settings that send mail to the sink."""
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port, "MAIL_TIMEOUT": 5}


def run_dispatcher(app: Flask) -> int:
    """Resolve every pending reset request and deliver every due email; returns the work done."""
    dispatcher = app.extensions["resetdesk.dispatcher"]
    total = 0
    while (handled := dispatcher.run_once()) > 0:
        total += handled
    return total


def database_dump(app: Flask) -> str:
    """Every value of every column of every table, as one text."""
    values: list[str] = []
    with app.app_context():
        for table in inspect(db.engine).get_table_names():
            for row in db.session.execute(text(f'SELECT * FROM "{table}"')):
                values.extend(str(value) for value in row)
        db.session.remove()
    return "\n".join(values)
