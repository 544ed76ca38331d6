"""The loop that resolves reset requests and delivers mail: inside the web process
(`OUTBOX_DISPATCH=inline`) or in `flask outbox run` workers."""

from __future__ import annotations

import logging
import os
import threading

from flask import Flask, Response, after_this_request, current_app
from sqlalchemy.exc import SQLAlchemyError

from .clock import utcnow
from .extensions import db
from .outbox import deliver_due
from .resets import process_reset_requests

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
ERROR_PAUSE_SECONDS = 5.0


class Dispatcher:
    """Works the queues until told to stop; `wake` starts a pass at once."""

    def __init__(self, app: Flask, poll_seconds: float = POLL_SECONDS) -> None:
        self.app = app
        self.poll_seconds = poll_seconds
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None

    def run_once(self) -> int:
        """One pass: resolve pending reset requests, then deliver due mail. Returns work done."""
        with self.app.app_context():
            try:
                # Requests first, all of them: a slow SMTP server must not keep resets from
                # being issued (their mail then waits in the outbox like any other).
                resolved = 0
                while (batch := process_reset_requests(db.session, now=utcnow())) > 0:
                    resolved += batch
                    if self.stopping.is_set():
                        break
                report = deliver_due(db.session, now=utcnow(), should_stop=self.stopping.is_set)
                return resolved + report.handled
            finally:
                db.session.remove()

    def run_forever(self) -> None:
        """Pass after pass until `stop`; a database outage pauses the loop, never ends it."""
        while not self.stopping.is_set():
            try:
                busy = self.run_once() > 0
            except SQLAlchemyError:
                log.exception("dispatcher pass failed; trying again in %.0f s", ERROR_PAUSE_SECONDS)
                self.stopping.wait(ERROR_PAUSE_SECONDS)
                continue
            if not busy:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, wait_seconds: float = 0.0) -> None:
        """Finish the message in flight, then return from `run_forever`; optionally wait for it."""
        self.stopping.set()
        self._wake.set()
        if wait_seconds and self._thread is not None and self._thread_pid == os.getpid():
            self._thread.join(wait_seconds)

    def ensure_thread(self) -> None:
        """Start the background thread in this process, once (gunicorn forks after import)."""
        if self._thread is not None and self._thread.is_alive() and self._thread_pid == os.getpid():
            return
        self._thread_pid = os.getpid()
        self._thread = threading.Thread(target=self.run_forever, name="outbox-dispatcher", daemon=True)
        self._thread.start()


def current_dispatcher() -> Dispatcher:
    """The current app's dispatcher."""
    return current_app.extensions["resetdesk.dispatcher"]


def wake_after_response() -> None:
    """Wake the dispatcher once this answer's last byte is out, not before.

    Woken earlier, the dispatcher's work for an existing account (a reset, its mail) would
    compete with the answer still being written, and slow it where a missing name's is not.
    """
    dispatcher = current_dispatcher()

    @after_this_request
    def wake_when_sent(response: Response) -> Response:
        response.call_on_close(dispatcher.wake)
        return response


def register_dispatcher(app: Flask) -> None:
    """Create the app's dispatcher; with inline dispatch, each worker process runs one."""
    dispatcher = Dispatcher(app)
    app.extensions["resetdesk.dispatcher"] = dispatcher
    if app.config["OUTBOX_DISPATCH"] == "inline":
        app.before_request(dispatcher.ensure_thread)
