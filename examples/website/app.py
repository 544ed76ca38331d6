"""A tiny website backend that signs its customers in through resetdesk.

It shows the three things a website does with resetdesk: it checks a customer's password with
`POST /api/v1/auth/verify`; when resetdesk answers `must_change_password` (a temporary password
from support), it asks for a new one and sets it with `POST /api/v1/accounts/{username}/password`;
and it receives resetdesk's webhooks, verified with `standardwebhooks`, to end a customer's
sessions once their password changes (or the account is frozen or closed).

Settings (environment): RESETDESK_URL (the API's origin, such as http://127.0.0.1:5000),
RESETDESK_API_KEY (a `client` key), RESETDESK_WEBHOOK_SECRET (resetdesk's WEBHOOK_SECRET),
SECRET_KEY (signs this site's cookies). Run: `flask --app app run --port 8000`.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from flask import Flask, abort, redirect, render_template_string, request, session, url_for
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

# Events after which a customer's sessions must end.
ENDING_EVENTS = {"password.changed", "account.frozen", "account.closed"}


@dataclass
class SignedIn:
    """One browser's session, opened against the password that was current then."""

    username: str
    password_changed_at: str | None


class Sessions:
    """Server-side sessions (the cookie only holds a random id), in memory for the example."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[str, SignedIn] = {}
        # Waiting for a new password: the temporary one is kept here, never in the cookie.
        self.pending: dict[str, tuple[str, str]] = {}
        self.seen_webhooks: set[str] = set()

    def end_for(self, username: str, password_changed_at: str | None) -> int:
        """End every session of `username` opened against another password than the current one."""
        with self.lock:
            ended = [
                sid for sid, signed_in in self.open.items()
                if signed_in.username == username and signed_in.password_changed_at != password_changed_at
            ]
            for sid in ended:
                del self.open[sid]
            return len(ended)


class Resetdesk:
    """The few calls this site makes, with its `client` key."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def call(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Status and JSON body (problem documents included) of one API call."""
        call = urllib.request.Request(
            f"{self.base_url}/api/v1{path}", data=json.dumps(body).encode(), method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        try:
            with urllib.request.urlopen(call, timeout=10) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return status, json.loads(raw) if raw else {}

    def verify(self, username: str, password: str) -> tuple[int, dict[str, Any]]:
        return self.call("POST", "/auth/verify", {"username": username, "password": password})

    def change_password(self, username: str, current: str, new: str) -> tuple[int, dict[str, Any]]:
        path = f"/accounts/{urllib.request.quote(username, safe='')}/password"
        return self.call("POST", path, {"current_password": current, "new_password": new})


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Example shop</title></head>
<body><main>
{% if message %}<p role="alert">{{ message }}</p>{% endif %}
{% if step == "home" %}
  {% if username %}<p>Signed in as <strong>{{ username }}</strong>.</p>
    <form method="post" action="{{ url_for('sign_out') }}"><button>Sign out</button></form>
  {% else %}<p>Not signed in. <a href="{{ url_for('sign_in') }}">Sign in</a></p>{% endif %}
{% elif step == "sign_in" %}
  <h1>Sign in</h1>
  <form method="post">
    <label>Username <input name="username" autocomplete="username" required></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
    <button>Sign in</button>
  </form>
  <p><a href="{{ reset_box }}">Forgot your password?</a></p>
{% elif step == "choose" %}
  <h1>Choose a new password</h1>
  <p>You signed in with a temporary password. Choose your own to continue.</p>
  {% for error in errors %}<p>{{ error }}</p>{% endfor %}
  <form method="post">
    <label>New password <input name="new_password" type="password" autocomplete="new-password" required></label>
    <button>Save and continue</button>
  </form>
{% endif %}
</main></body></html>"""


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The example site; `config` overrides the environment (tests)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_hex(32),
        RESETDESK_URL=os.environ.get("RESETDESK_URL", "http://127.0.0.1:5000"),
        RESETDESK_API_KEY=os.environ.get("RESETDESK_API_KEY", ""),
        RESETDESK_WEBHOOK_SECRET=os.environ.get("RESETDESK_WEBHOOK_SECRET", ""),
    )
    app.config.update(config or {})
    resetdesk = Resetdesk(app.config["RESETDESK_URL"], app.config["RESETDESK_API_KEY"])
    webhook = Webhook(app.config["RESETDESK_WEBHOOK_SECRET"]) if app.config["RESETDESK_WEBHOOK_SECRET"] else None
    sessions = Sessions()
    app.extensions["example.sessions"] = sessions

    def page(step: str, status: int = 200, **values: Any) -> tuple[str, int]:
        return render_template_string(PAGE, step=step, **values), status

    def open_session(username: str, password_changed_at: str | None) -> None:
        sid = secrets.token_urlsafe(32)
        with sessions.lock:
            sessions.open[sid] = SignedIn(username, password_changed_at)
        session.clear()
        session["sid"] = sid

    @app.get("/")
    def home() -> tuple[str, int]:
        signed_in = sessions.open.get(session.get("sid", ""))
        return page("home", username=signed_in.username if signed_in else None)

    @app.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> Any:
        reset_box = f"{app.config['RESETDESK_URL']}/reset-password"
        if request.method == "GET":
            return page("sign_in", reset_box=reset_box)
        username, password = request.form.get("username", ""), request.form.get("password", "")
        status, answer = resetdesk.verify(username, password)
        if status == 200 and answer["must_change_password"]:
            pending = secrets.token_urlsafe(32)
            with sessions.lock:
                sessions.pending[pending] = (answer["username"], password)
            session.clear()
            session["pending"] = pending
            return redirect(url_for("choose_password"))
        if status == 200:
            open_session(answer["username"], answer["password_changed_at"])
            return redirect(url_for("home"))
        messages = {401: "Wrong username or password.", 403: answer.get("detail"), 429: answer.get("detail")}
        return page("sign_in", status if status in messages else 502, reset_box=reset_box,
                    message=messages.get(status, "Sign-in is not available right now."))

    @app.route("/choose-password", methods=["GET", "POST"])
    def choose_password() -> Any:
        pending = sessions.pending.get(session.get("pending", ""))
        if pending is None:
            return redirect(url_for("sign_in"))
        if request.method == "GET":
            return page("choose")
        username, temporary = pending
        new_password = request.form.get("new_password", "")
        status, answer = resetdesk.change_password(username, temporary, new_password)
        if status == 400:
            errors = [error["message"] for error in answer.get("errors", [])] or [answer.get("detail")]
            return page("choose", 400, errors=errors)
        if status != 204:
            return redirect(url_for("sign_in"))
        with sessions.lock:
            sessions.pending.pop(session["pending"], None)
        # Sign in again to learn the new password's time: this session belongs to it, so the
        # `password.changed` webhook that follows ends the others and not this one.
        status, answer = resetdesk.verify(username, new_password)
        if status != 200:
            return redirect(url_for("sign_in"))
        open_session(answer["username"], answer["password_changed_at"])
        return redirect(url_for("home"))

    @app.post("/sign-out")
    def sign_out() -> Any:
        with sessions.lock:
            sessions.open.pop(session.get("sid", ""), None)
        session.clear()
        return redirect(url_for("home"))

    @app.post("/hooks/resetdesk")
    def receive_webhook() -> tuple[str, int]:
        if webhook is None:
            abort(404)
        try:
            event = webhook.verify(request.get_data(), dict(request.headers))
        except WebhookVerificationError:
            return "bad signature", 400
        # Deliveries are retried with the same id until answered: do each one once.
        with sessions.lock:
            if event["id"] in sessions.seen_webhooks:
                return "", 204
            sessions.seen_webhooks.add(event["id"])
        if event["type"] in ENDING_EVENTS:
            changed_at = event["data"]["password_changed_at"] if event["type"] == "password.changed" else "ended"
            sessions.end_for(event["data"]["username"], changed_at)
        return "", 204

    return app
