"""The example website in examples/website/, driven against a real resetdesk (gunicorn, inline
dispatch): sign-in through auth/verify, the "choose a new password" step after a temporary
password, the reset box link, and sessions ended by the signed `password.changed` webhook."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import STRONG_PASSWORD, SmtpSink
from tests.processes import PROJECT, flask, free_port, served_by_gunicorn, service_env

pytestmark = pytest.mark.slow

SECRET = "whsec_" + base64.b64encode(b"example-website-webhook-key-32b!").decode()
NEW_PASSWORD = "lantern meadow quietly unfolds"
WAIT_SECONDS = 20


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("example_website", PROJECT / "examples" / "website" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def website(tmp_path: Path, smtp: SmtpSink) -> Iterator[dict[str, Any]]:
    """The example site on a real port (for the webhooks), and resetdesk posting to it."""
    site_port, port = free_port(), free_port()
    env = service_env(tmp_path, port, smtp)
    env.update(WEBHOOK_URLS=f"http://127.0.0.1:{site_port}/hooks/resetdesk", WEBHOOK_SECRET=SECRET)
    flask(env, "db", "upgrade")
    flask(env, "users", "create", "jane", "jane@example.com", "--password-stdin", stdin=STRONG_PASSWORD + "\n")
    key = flask(env, "apikeys", "create", "website", "--role", "client").strip().splitlines()[-1]
    with served_by_gunicorn(env, port, tmp_path / "gunicorn.log") as base:
        app: Flask = load_example().create_app(
            {"RESETDESK_URL": base, "RESETDESK_API_KEY": key, "RESETDESK_WEBHOOK_SECRET": SECRET, "TESTING": True}
        )
        server = make_server("127.0.0.1", site_port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield {"app": app, "base": base, "env": env, "site": f"http://127.0.0.1:{site_port}"}
        finally:
            server.shutdown()
            server.server_close()


def signed_in_as(browser: Any) -> str | None:
    match = re.search(r"Signed in as <strong>([^<]+)</strong>", browser.get("/").get_data(as_text=True))
    return match.group(1) if match else None


def test_the_example_site_signs_in_changes_a_temporary_password_and_ends_old_sessions(
    website: dict[str, Any], smtp: SmtpSink
) -> None:
    app: Flask = website["app"]
    sign_in_page = app.test_client().get("/sign-in").get_data(as_text=True)
    assert f'href="{website["base"]}/reset-password"' in sign_in_page
    with urllib.request.urlopen(f"{website['base']}/reset-password", timeout=10) as reset_box:
        assert reset_box.status == 200

    # Two browsers signed in with the password as it is now; a wrong one is refused.
    laptop, phone, kiosk = app.test_client(), app.test_client(), app.test_client()
    wrong = laptop.post("/sign-in", data={"username": "jane", "password": "not the password at all"})
    assert wrong.status_code == 401
    for browser in (laptop, phone):
        assert browser.post("/sign-in", data={"username": "jane", "password": STRONG_PASSWORD}).status_code == 302
        assert signed_in_as(browser) == "jane"

    # Support sends a temporary password; signing in with it asks for a new one first.
    flask(website["env"], "reset", "send", "jane", "--method", "temporary_password")
    deadline = time.monotonic() + WAIT_SECONDS
    while not smtp.to("jane@example.com"):
        assert time.monotonic() < deadline, "no temporary password mail"
        time.sleep(0.1)
    temporary = re.search(r"^\s{4}(\S+)\s*$", SmtpSink.text_of(smtp.to("jane@example.com")[-1]), re.M)
    assert temporary is not None
    answer = kiosk.post("/sign-in", data={"username": "jane", "password": temporary.group(1)})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/choose-password")
    assert signed_in_as(kiosk) is None
    assert "Choose a new password" in kiosk.get("/choose-password").get_data(as_text=True)
    weak = kiosk.post("/choose-password", data={"new_password": "short"})
    assert weak.status_code == 400
    assert kiosk.post("/choose-password", data={"new_password": NEW_PASSWORD}).status_code == 302
    assert signed_in_as(kiosk) == "jane"

    # resetdesk posts `password.changed`, signed; the site ends the sessions of the old password.
    deadline = time.monotonic() + WAIT_SECONDS
    while signed_in_as(laptop) or signed_in_as(phone):
        assert time.monotonic() < deadline, "the password.changed webhook did not end the old sessions"
        time.sleep(0.2)
    assert signed_in_as(kiosk) == "jane"
    assert laptop.post("/sign-in", data={"username": "jane", "password": STRONG_PASSWORD}).status_code == 401
    assert laptop.post("/sign-in", data={"username": "jane", "password": NEW_PASSWORD}).status_code == 302


def test_the_example_site_refuses_an_unsigned_webhook(website: dict[str, Any]) -> None:
    forged = {"id": "evt_forged", "type": "password.changed", "timestamp": "2025-01-01T00:00:00+00:00",
              "data": {"username": "jane", "password_changed_at": None, "actor": "self", "details": {}}}
    request = urllib.request.Request(
        f"{website['site']}/hooks/resetdesk", data=json.dumps(forged).encode(), method="POST",
        headers={"Content-Type": "application/json", "webhook-id": "evt_forged",
                 "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    refused.value.close()
