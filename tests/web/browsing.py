"""What the browser tests share: a gunicorn server on loopback with mail going to a real SMTP
sink, Debian's Chromium driven by Playwright's client, axe-core, screenshots, and reading mail.

The fixtures (`sink`, `browser`, `new_context`, `page`) are in tests/web/conftest.py; each
browser test module defines its own `server` fixture with `serve(...)`. Importing this module
skips the importing module, saying why, when Playwright's client or Chromium is missing.
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SmtpSink
from tests.processes import call, flask, free_port, served_by_gunicorn, service_env

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright Python package is not installed: `make install-dev` installs it",
)
Browser, BrowserContext, Page, expect, sync_playwright = (
    sync_api.Browser, sync_api.BrowserContext, sync_api.Page, sync_api.expect, sync_api.sync_playwright,
)

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium")
if not CHROMIUM:
    pytest.skip(
        "no Chromium: /usr/bin/chromium is missing and `chromium` is not on PATH "
        "(apt-get install chromium; Playwright's own browser downloads are not used)",
        allow_module_level=True,
    )
# Headless, and quiet: without the background-networking flags Chromium tries to reach the
# internet (updates, field trials, sync), which these tests must never do.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

PROJECT = Path(__file__).resolve().parents[2]
AXE = PROJECT / ".browser" / "node_modules" / "axe-core" / "axe.min.js"
needs_axe = pytest.mark.skipif(
    not AXE.is_file(), reason=f"axe-core is not installed at {AXE}: run `make browser-deps` (needs npm)"
)
SCREENSHOTS = PROJECT / "tests" / "screenshots"
DOC_SCREENSHOTS = PROJECT / "docs" / "screenshots"

MAIL_WAIT_SECONDS = 15
LANGUAGES = ("en", "fr")
BLOCKING_IMPACTS = ("serious", "critical")


# --- the server, the mail sink and the browser ------------------------------------------------


@dataclass
class Server:
    base: str
    client_key: str
    log: Path
    secret_key: str


@contextmanager
def serve(
    tmp: Path, sink: SmtpSink, *, accounts: Iterable[tuple[str, str]], settings: dict[str, str] | None = None,
    before_start: Callable[[dict[str, str]], None] | None = None,
) -> Iterator[Server]:
    """gunicorn on a migrated SQLite database holding `accounts` (username, email; all with
    STRONG_PASSWORD) and a client key, with mail going to `sink`.

    The real argon2id cost is kept (PASSWORD_HASH_CHEAP is for APP_ENV=testing only): these
    tests sign in a handful of times at most. `before_start` may run more CLI commands.
    """
    from tests.conftest import STRONG_PASSWORD

    port = free_port()
    env = service_env(tmp, port, sink)
    env.update(
        RATELIMIT_ENABLED="false",
        # gunicorn.conf.py would make a temporary directory of its own and leave it behind.
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
        **(settings or {}),
    )
    (tmp / "metrics").mkdir()
    flask(env, "db", "upgrade")
    for username, email in accounts:
        flask(env, "users", "create", username, email, "--password-stdin", stdin=STRONG_PASSWORD + "\n")
    if before_start:
        before_start(env)
    key = flask(env, "apikeys", "create", "website", "--role", "client").strip().splitlines()[-1]
    log_path = tmp / "gunicorn.log"
    with served_by_gunicorn(env, port, log_path) as base:
        yield Server(base=base, client_key=key, log=log_path, secret_key=env["SECRET_KEY"])


def launch_chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless and offline, for as long as the caller keeps it."""
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


# --- mail -------------------------------------------------------------------------------------


def wait_for_mail(sink: SmtpSink, address: str, after: int, pattern: str = "") -> EmailMessage:
    """The first mail to `address` among those received after the first `after` whose text
    matches `pattern`."""
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while True:
        for message in list(sink.messages[after:]):
            if message["To"] == address and re.search(pattern, SmtpSink.text_of(message)):
                return message
        assert time.monotonic() < deadline, f"no mail matching {pattern!r} to {address} within {MAIL_WAIT_SECONDS} s"
        time.sleep(0.05)


def wait_for_link(sink: SmtpSink, server: Server, address: str, after: int) -> str:
    """The reset link in the first mail to `address` among those received after the first `after`."""
    link = re.escape(server.base) + r"/reset-password/\S+"
    match = re.search(link, SmtpSink.text_of(wait_for_mail(sink, address, after, link)))
    assert match
    return match.group(0)


def wait_for_subject(sink: SmtpSink, address: str, subject: str, after: int) -> None:
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while not any(m["To"] == address and m["Subject"] == subject for m in list(sink.messages[after:])):
        assert time.monotonic() < deadline, f"no {subject!r} mailed to {address} within {MAIL_WAIT_SECONDS} s"
        time.sleep(0.05)


def verify(server: Server, username: str, password: str) -> int:
    """The status /api/v1/auth/verify answers the website for this username and password."""
    status, _body = call(
        "POST", f"{server.base}/api/v1/auth/verify", {"username": username, "password": password},
        {"Authorization": f"Bearer {server.client_key}"},
    )
    return status


def request_link(server: Server, sink: SmtpSink, username: str, address: str) -> str:
    """Ask for a reset over the API (as the website would) and return the mailed link."""
    before = len(sink.messages)
    assert call("POST", f"{server.base}/api/v1/password-resets", {"username": username})[0] == 202
    return wait_for_link(sink, server, address, before)


# --- screenshots and axe-core -----------------------------------------------------------------


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def copy_doc_screenshots(names: Iterable[str]) -> None:
    """With UPDATE_DOC_SCREENSHOTS=1, copy the English screenshot of each page to docs/screenshots."""
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") != "1":
        return
    DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(SCREENSHOTS / f"{name}.en.png", DOC_SCREENSHOTS / f"{name}.png")


def run_axe(page: Page) -> dict[str, Any]:
    """axe-core on the page as it is now (its default rules: WCAG 2.x A and AA, best practices):
    the violations, what needs a human to review, and how many rules passed."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => {
            const results = await axe.run(document, {resultTypes: ["violations", "incomplete"]});
            const brief = found => found.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
            }));
            return {
                violations: brief(results.violations), incomplete: brief(results.incomplete),
                passes: results.passes.length,
            };
        }"""
    )


def blocking_axe_findings(page: Page, name: str, language: str) -> list[dict[str, Any]]:
    """Run axe-core, print what it found, and return the serious and critical violations."""
    results = run_axe(page)
    assert results["passes"] >= 10, f"axe-core checked next to nothing on {name}: {results}"
    print(
        f"axe {language} {name}: {len(results['violations'])} violations, "
        f"{len(results['incomplete'])} to review, {results['passes']} rules passed"
    )
    for kind in ("violations", "incomplete"):
        for found in results[kind]:
            print(f"axe {language} {name} {kind}: {found['impact']} {found['id']}: {found['help']} {found['nodes']}")
    return [v for v in results["violations"] if v["impact"] in BLOCKING_IMPACTS]


def csp_refusals(page: Page) -> list[str]:
    """Collects what the page's Content-Security-Policy refused, as Chromium reports it."""
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    return refused
