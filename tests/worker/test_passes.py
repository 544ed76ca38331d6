"""A dispatcher's passes: one with nothing to do costs one read; the SMTP connection is kept
from one pass to the next, and given back once a whole poll goes by without work."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from flask import Flask

from service import create_app
from service.outbox.mail import RenderedEmail
from service.outbox.queue import queue_email
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.worker.dispatcher import INLINE_GATHER_SECONDS, Dispatcher
from tests.conftest import SmtpSink, smtp_settings
from tests.conftest import test_settings as settings_for

EMAIL = RenderedEmail(subject="Hello", text_body="Plain words.", html_body="<p>Plain words.</p>")


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return smtp_settings(smtp)


def queue_one(app: Flask, recipient: str) -> None:
    with app.app_context():
        queue_email(db.session, recipient, EMAIL, account_id=None, now=utcnow())
        db.session.commit()


def test_a_pass_with_nothing_to_do_is_one_read(app: Flask) -> None:
    dispatcher = Dispatcher(app)
    dispatcher.housekeeping_interval = 0
    statements: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert dispatcher._pass() == 0
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 1 and statements[0].startswith("SELECT EXISTS")
    # Both queues in that one read.
    assert "FROM reset_requests" in statements[0] and "FROM outbox" in statements[0]


def test_passes_without_mail_keep_the_connection_for_the_next_mail(app: Flask, smtp: SmtpSink) -> None:
    dispatcher = Dispatcher(app)
    queue_one(app, "first@example.com")
    assert dispatcher._pass() == 1
    # Passes that find nothing to send (a request for no account, say) between two mails.
    assert dispatcher._pass() == 0
    assert dispatcher._pass() == 0
    queue_one(app, "second@example.com")
    assert dispatcher._pass() == 1
    assert [message["To"] for message in smtp.messages] == ["first@example.com", "second@example.com"]
    assert smtp.greetings == 1
    dispatcher.close_idle_connection()


def test_an_idle_poll_gives_the_connection_back(app: Flask, smtp: SmtpSink) -> None:
    dispatcher = Dispatcher(app, poll_seconds=0.05)
    queue_one(app, "first@example.com")
    dispatcher.ensure_thread()
    try:
        deadline = utcnow().timestamp() + 10
        while not smtp.messages and utcnow().timestamp() < deadline:
            dispatcher.stopping.wait(0.02)
        # The next polls find nothing: the connection is closed, and the next mail opens one.
        dispatcher.stopping.wait(0.5)
        queue_one(app, "second@example.com")
        dispatcher.wake()
        while len(smtp.messages) < 2 and utcnow().timestamp() < deadline:
            dispatcher.stopping.wait(0.02)
    finally:
        dispatcher.stop(wait_seconds=5)
    assert len(smtp.messages) == 2
    assert smtp.greetings == 2


@pytest.mark.parametrize(("dispatch", "gathers"), [("inline", True), ("external", False)])
def test_an_inline_dispatcher_gathers_work_before_each_pass_and_an_outbox_worker_does_not(
    tmp_path: Path, dispatch: str, gathers: bool
) -> None:
    """Under inline dispatch every request wakes the dispatcher: waiting a moment first lets the
    requests of the next milliseconds join one pass. An `outbox run` worker is never woken, and
    its passes are full: a wait would only slow it."""
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'gather.db'}", OUTBOX_DISPATCH=dispatch))
    dispatcher: Dispatcher = app.extensions["resetdesk.dispatcher"]
    happened: list[Any] = []

    class RecordedStop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            happened.append(("wait", timeout))
            return super().wait(0)

    def busy_pass() -> int:
        happened.append("pass")
        if happened.count("pass") == 2:
            dispatcher.stopping.set()
        return 1

    dispatcher.stopping = RecordedStop()
    dispatcher._pass = busy_pass  # type: ignore[method-assign]
    dispatcher.run_forever()
    gather = ("wait", INLINE_GATHER_SECONDS)
    assert happened == ([gather, "pass", gather, "pass"] if gathers else ["pass", "pass"])
