"""Cookie sessions: the same signed cookies as Flask's own interface, set up once per key set."""

from __future__ import annotations

from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface

from service.platform.cookiesessions import CookieSessionInterface


def cookie_for(app: Flask, interface: SecureCookieSessionInterface, data: dict[str, str]) -> str:
    serializer = interface.get_signing_serializer(app)
    assert serializer is not None
    return str(serializer.dumps(data))


def test_the_app_uses_the_cookie_session_interface(app: Flask) -> None:
    assert isinstance(app.session_interface, CookieSessionInterface)


def test_a_cookie_signed_by_flask_s_own_interface_opens_and_the_reverse(app: Flask) -> None:
    ours = app.session_interface
    flask_own = SecureCookieSessionInterface()
    assert isinstance(ours, CookieSessionInterface)
    with app.test_request_context(headers={"Cookie": f"session={cookie_for(app, flask_own, {'k': 'v'})}"}) as ctx:
        opened = ours.open_session(app, ctx.request)
        assert opened is not None and dict(opened) == {"k": "v"}
    with app.test_request_context(headers={"Cookie": f"session={cookie_for(app, ours, {'k': 'w'})}"}) as ctx:
        opened = flask_own.open_session(app, ctx.request)
        assert opened is not None and dict(opened) == {"k": "w"}


def test_a_request_without_cookies_gets_a_fresh_session_that_can_be_written(app: Flask) -> None:
    with app.test_request_context() as ctx:
        opened = app.session_interface.open_session(app, ctx.request)
        assert opened is not None and dict(opened) == {} and not opened.modified


def test_a_tampered_cookie_opens_an_empty_session(app: Flask) -> None:
    cookie = cookie_for(app, app.session_interface, {"k": "v"})  # type: ignore[arg-type]
    with app.test_request_context(headers={"Cookie": f"session={cookie[:-2]}xx"}) as ctx:
        opened = app.session_interface.open_session(app, ctx.request)
        assert opened is not None and dict(opened) == {}


def test_the_serializer_is_built_once_and_again_when_the_key_changes(app: Flask) -> None:
    interface = app.session_interface
    first = interface.get_signing_serializer(app)
    assert interface.get_signing_serializer(app) is first
    old_cookie = cookie_for(app, interface, {"k": "v"})  # type: ignore[arg-type]
    previous_key = app.secret_key
    app.config["SECRET_KEY_FALLBACKS"] = [previous_key]
    app.secret_key = "a-new-key-after-rotation"
    try:
        rotated = interface.get_signing_serializer(app)
        assert rotated is not first
        # The old key still opens cookies it signed, as Flask's fallbacks promise.
        with app.test_request_context(headers={"Cookie": f"session={old_cookie}"}) as ctx:
            opened = interface.open_session(app, ctx.request)
            assert opened is not None and dict(opened) == {"k": "v"}
    finally:
        app.secret_key = previous_key
        app.config["SECRET_KEY_FALLBACKS"] = []


def test_a_session_written_in_one_request_is_read_in_the_next(app: Flask) -> None:
    @app.get("/test-session/write")
    def write() -> str:
        session["seen"] = "yes"
        return "ok"

    @app.get("/test-session/read")
    def read() -> str:
        return str(session.get("seen", "no"))

    client = app.test_client()
    client.get("/test-session/write")
    assert client.get("/test-session/read").get_data(as_text=True) == "yes"
