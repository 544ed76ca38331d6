"""Flask's signed-cookie sessions, with the set-up each request repeated done once."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessionInterface(SecureCookieSessionInterface):
    """The same cookies as Flask's own interface (same salt, keys, signature and format).

    Flask builds a new signing serializer on every request and parses the Cookie header even
    when there is none, as on every API call. Here the serializer is built once per set of
    keys (SECRET_KEY and its fallbacks; rebuilt if they change), and a request without
    cookies gets a fresh empty session without any parsing.
    """

    def __init__(self) -> None:
        self._serializer: tuple[tuple[object, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *app.config["SECRET_KEY_FALLBACKS"])
        cached = self._serializer
        if cached is None or cached[0] != keys:
            cached = self._serializer = (keys, super().get_signing_serializer(app))
        return cached[1]

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.environ.get("HTTP_COOKIE") and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)


def register_cookie_sessions(app: Flask) -> None:
    app.session_interface = CookieSessionInterface()
