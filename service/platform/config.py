"""Settings: one mapping of defaults, then the environment, then explicit overrides."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from limits import parse_many

from service.platform.sqlite_writer import WriterLockConnection

ENVIRONMENTS = ("development", "production", "testing")
# The rate-limit settings that hold a limit string (Flask-Limiter's notation, "10/minute;100/hour").
LIMIT_SETTINGS = (
    "RATELIMIT_RESET_PER_IP", "RATELIMIT_RESET_PER_USERNAME", "RATELIMIT_TOKEN_PER_IP", "RATELIMIT_PAGES_PER_IP",
    "RATELIMIT_REMINDER_PER_IP", "RATELIMIT_REMINDER_PER_ADDRESS", "RATELIMIT_CODE_PER_USERNAME",
)
WEBHOOK_SECRET_PREFIX = "whsec_"
RESET_METHODS = ("link", "temporary_password")
DISPATCH_MODES = ("inline", "external")
# Booleans whose default follows from other settings when they are not set (see _derive).
DERIVED_BOOLS = ("AGENT_REQUIRE_TOTP",)

# Every setting the service reads, with its default. The type of the default decides how the
# environment's string is parsed: bool, int, tuple (comma-separated) or str.
DEFAULTS: dict[str, Any] = {
    "APP_ENV": "development",
    "SECRET_KEY": "",
    "SECRET_KEY_FALLBACKS": (),
    "DATABASE_URL": "",
    "PUBLIC_BASE_URL": "",
    "SIGN_IN_URL": "",
    "SHOP_NAME": "Canadian Insulin",
    "LOGO_URL": "",
    "PRIMARY_COLOUR": "#0b5394",
    "TRUSTED_HOSTS": (),
    "MAIL_SERVER": "",
    "MAIL_PORT": 25,
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_USERNAME": "",
    "MAIL_PASSWORD": "",
    "MAIL_DEFAULT_SENDER": "resetdesk@localhost",
    "MAIL_TIMEOUT": 10,
    "OUTBOX_DISPATCH": "inline",
    "RESET_METHOD": "link",
    "RESET_TOKEN_MAX_AGE": 3600,
    "TEMPORARY_PASSWORD_MAX_AGE": 86400,
    "RESET_MAILS_PER_HOUR": 3,
    "RESET_CODE_ATTEMPTS": 5,
    "PASSWORD_MIN_LENGTH": 15,
    "PASSWORD_MIN_SCORE": 3,
    "PASSWORD_HASH_CHEAP": False,
    # None: derived from APP_ENV (the public API in production, off elsewhere) unless set;
    # set to nothing, it is off.
    "PWNED_PASSWORDS_URL": None,
    "PWNED_PASSWORDS_TIMEOUT": 1.5,
    "LOGIN_MAX_FAILURES": 10,
    "WEBHOOK_URLS": (),
    "WEBHOOK_SECRET": "",
    "WEBHOOK_EVENTS": (
        "password.changed", "reset.requested", "account.unlocked", "account.closed", "account.reported",
        "account.frozen", "account.unfrozen", "account.email_changed",
    ),
    "WEBHOOK_TIMEOUT": 10,
    "AGENT_RESETS_PER_HOUR": 30,
    "AGENT_IDLE_MINUTES": 30,
    # None: derived from APP_ENV (required in production) unless set.
    "AGENT_REQUIRE_TOTP": None,
    "SUPPORT_VERIFICATION_METHODS": ("callback", "order_number", "date_of_birth", "email_reply"),
    "SUPPORT_REQUIRE_VERIFICATION": False,
    "RATELIMIT_STORAGE_URI": "memory://",
    "REDIS_SOCKET_TIMEOUT": 0.2,
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_RESET_PER_IP": "10/minute;100/hour",
    "RATELIMIT_RESET_PER_USERNAME": "5/hour",
    "RATELIMIT_REMINDER_PER_IP": "5/minute;30/hour",
    "RATELIMIT_REMINDER_PER_ADDRESS": "3/hour",
    "RATELIMIT_TOKEN_PER_IP": "30/minute",
    "RATELIMIT_CODE_PER_USERNAME": "10/hour",
    "RATELIMIT_PAGES_PER_IP": "120/minute",
    "TRUSTED_PROXIES": 0,
    "DB_POOL_SIZE": 5,
    "DB_MAX_OVERFLOW": 10,
    "DB_POOL_TIMEOUT": 10,
    "DB_POOL_RECYCLE": 1800,
    "LOG_FORMAT": "",
    "METRICS_ENABLED": True,
    "METRICS_TOKEN": "",
    "WORKER_METRICS_PORT": 0,
    "RETAIN_RESET_REQUESTS_DAYS": 30,
    "RETAIN_OUTBOX_DAYS": 30,
    "RETAIN_AUDIT_DAYS": 365,
    "HOUSEKEEPING_INTERVAL_SECONDS": 3600,
    # Loopback unless an operator opens it on purpose (a scraper on another host).
    "WORKER_METRICS_HOST": "127.0.0.1",
    "CONTACT_EMAIL": "service@canadianinsulin.com",
    "CONTACT_PHONE": "1-844-560-7790",
    "CONTACT_FAX": "1-866-951-0118",
    "CONTACT_HOURS": "Mon-Fri 09:00-18:00",
    "CONTACT_TIMEZONE": "America/New_York",
}

PASSWORD_MIN_LENGTH_FLOOR = 8
# Have I Been Pwned's Pwned Passwords range API: GET <this>/<first 5 hex of a SHA-1>.
PWNED_PASSWORDS_RANGE_URL = "https://api.pwnedpasswords.com/range"

log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message says what to set."""


def settings() -> Mapping[str, Any]:
    """The current app's settings, built once by `create_app`: the one way rules read them."""
    return current_app.config


def load_config(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    instance_path: str | os.PathLike[str] = "instance",
) -> dict[str, Any]:
    """Build the settings from the defaults, the environment and overrides, and check them."""
    environ = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    for name, default in DEFAULTS.items():
        if name in environ:
            settings[name] = _parse(name, environ[name], False if name in DERIVED_BOOLS else default)
    settings.update(overrides or {})
    _check(settings)
    _derive(settings, Path(instance_path))
    return settings


def _parse(name: str, raw: str, default: Any) -> Any:
    raw = raw.strip()
    if isinstance(default, bool):
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}.")
    if isinstance(default, (int, float)):
        try:
            return type(default)(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}.") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _check(settings: dict[str, Any]) -> None:
    env = settings["APP_ENV"]
    if env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}.")
    if env == "production":
        if not settings["SECRET_KEY"]:
            raise ConfigError(
                "SECRET_KEY is not set: set it to a long random string, for example the output "
                "of `python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
            )
        if not settings["PUBLIC_BASE_URL"]:
            raise ConfigError(
                "PUBLIC_BASE_URL is not set: set it to the public origin of this service, "
                "for example https://account.example.com, so emailed links point there."
            )
        if settings["PASSWORD_HASH_CHEAP"]:
            raise ConfigError("PASSWORD_HASH_CHEAP is for tests only: unset it in production.")
        if not settings["MAIL_SERVER"]:
            # Without a server, mail is written to the log: reset links and temporary passwords with it.
            raise ConfigError(
                "MAIL_SERVER is not set: set it (and MAIL_PORT, MAIL_USERNAME, MAIL_PASSWORD as your "
                "SMTP server needs) so mail is sent instead of written to the log."
            )
        if settings["RATELIMIT_STORAGE_URI"].strip().lower().startswith("memory://"):
            raise ConfigError(
                "RATELIMIT_STORAGE_URI is memory://, which each process counts alone: set it to a shared "
                "store such as redis://redis-host:6379/0."
            )
    if settings["PASSWORD_MIN_LENGTH"] < PASSWORD_MIN_LENGTH_FLOOR:
        raise ConfigError(
            f"PASSWORD_MIN_LENGTH must be at least {PASSWORD_MIN_LENGTH_FLOOR}, "
            f"not {settings['PASSWORD_MIN_LENGTH']}."
        )
    if not 0 <= settings["PASSWORD_MIN_SCORE"] <= 4:
        raise ConfigError("PASSWORD_MIN_SCORE must be between 0 and 4.")
    pwned = settings["PWNED_PASSWORDS_URL"]
    if pwned and (urlsplit(pwned).scheme not in ("http", "https") or not urlsplit(pwned).hostname):
        raise ConfigError(
            f"PWNED_PASSWORDS_URL must be an http(s) URL such as {PWNED_PASSWORDS_RANGE_URL}, or empty "
            f"to turn the breached-password check off, not {pwned!r}."
        )
    if not settings["PWNED_PASSWORDS_TIMEOUT"] > 0:
        raise ConfigError("PWNED_PASSWORDS_TIMEOUT must be more than 0 (seconds).")
    if settings["RESET_METHOD"] not in RESET_METHODS:
        raise ConfigError(f"RESET_METHOD must be link or temporary_password, not {settings['RESET_METHOD']!r}.")
    if settings["OUTBOX_DISPATCH"] not in DISPATCH_MODES:
        raise ConfigError(f"OUTBOX_DISPATCH must be inline or external, not {settings['OUTBOX_DISPATCH']!r}.")
    for name in LIMIT_SETTINGS:
        _check_limit(name, settings[name])
    if settings["WEBHOOK_SECRET"]:
        _check_webhook_secret(settings["WEBHOOK_SECRET"])
    if settings["WEBHOOK_URLS"] and not settings["WEBHOOK_SECRET"]:
        raise ConfigError("WEBHOOK_URLS is set but WEBHOOK_SECRET is not: set a shared secret to sign webhooks with.")
    for url in settings["WEBHOOK_URLS"]:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"WEBHOOK_URLS: {url!r} is not an http(s) URL.")
    if not re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", settings["PRIMARY_COLOUR"]):
        raise ConfigError(f"PRIMARY_COLOUR must be a hex colour such as #0b5394, not {settings['PRIMARY_COLOUR']!r}.")
    logo = settings["LOGO_URL"]
    if logo and urlsplit(logo).scheme not in ("https", "http") and not logo.startswith("/"):
        raise ConfigError("LOGO_URL must be an http(s) URL or a path on this site, such as /static/logo.png.")
    if env == "production" and urlsplit(logo).scheme == "http":
        # Over plain http a browser blocks the logo on the HTTPS pages, and every mail client that
        # shows it tells the network who opened a mail from the shop, and when.
        raise ConfigError(
            "LOGO_URL is a plain http:// address: set an https:// one (or a path on this site, such as "
            "/static/logo.png) so pages and mail load it encrypted."
        )
    sign_in = urlsplit(settings["SIGN_IN_URL"])
    if settings["SIGN_IN_URL"] and (sign_in.scheme not in ("https", "http") or not sign_in.netloc):
        raise ConfigError(
            f"SIGN_IN_URL must be the http(s) address of the shop's sign-in page, not {settings['SIGN_IN_URL']!r}."
        )
    if settings["LOG_FORMAT"] not in ("", "json", "text"):
        raise ConfigError(f"LOG_FORMAT must be json or text, not {settings['LOG_FORMAT']!r}.")
    if settings["TRUSTED_PROXIES"] < 0:
        raise ConfigError("TRUSTED_PROXIES must be 0 or more.")
    for name in ("RETAIN_RESET_REQUESTS_DAYS", "RETAIN_OUTBOX_DAYS", "RETAIN_AUDIT_DAYS"):
        if settings[name] < 1:
            raise ConfigError(f"{name} must be at least 1 (days).")
    if settings["RETAIN_AUDIT_DAYS"] < max(settings["RETAIN_RESET_REQUESTS_DAYS"], settings["RETAIN_OUTBOX_DAYS"]):
        raise ConfigError(
            "RETAIN_AUDIT_DAYS must be at least RETAIN_RESET_REQUESTS_DAYS and RETAIN_OUTBOX_DAYS: "
            "the audit trail is the record of what the other rows did."
        )
    if settings["HOUSEKEEPING_INTERVAL_SECONDS"] < 0:
        raise ConfigError("HOUSEKEEPING_INTERVAL_SECONDS must be 0 (off) or more.")
    for name in ("RESET_MAILS_PER_HOUR", "RESET_CODE_ATTEMPTS"):
        if settings[name] < 1:
            raise ConfigError(f"{name} must be at least 1, not {settings[name]}.")
    if settings["LOGIN_MAX_FAILURES"] < 1:
        raise ConfigError("LOGIN_MAX_FAILURES must be at least 1.")
    methods = settings["SUPPORT_VERIFICATION_METHODS"]
    if not methods or not all(re.fullmatch(r"[a-z][a-z0-9_]{0,39}", method) for method in methods):
        raise ConfigError(
            "SUPPORT_VERIFICATION_METHODS must list one or more codes of lowercase letters, digits and _, "
            "comma-separated, such as callback,order_number."
        )
    base = urlsplit(settings["PUBLIC_BASE_URL"] or "http://localhost:5000")
    if base.scheme not in ("http", "https") or not base.hostname:
        raise ConfigError(f"PUBLIC_BASE_URL must be an http(s) origin, not {settings['PUBLIC_BASE_URL']!r}.")


def _check_limit(name: str, value: Any) -> None:
    """Refuse a limit string Flask-Limiter could not parse: it would turn that limit off."""
    try:
        limits = parse_many(value) if isinstance(value, str) and value.strip() else []
    except ValueError:
        limits = []
    if not limits:
        raise ConfigError(f"{name} must be a rate limit such as 10/minute or 10/minute;100/hour, not {value!r}.")


def _check_webhook_secret(secret: str) -> None:
    """Refuse a secret that is not a Standard Webhooks one: `whsec_` and the base64 of a key."""
    key = b""
    if secret.startswith(WEBHOOK_SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            key = b""
    if len(key) < 24:
        raise ConfigError(
            "WEBHOOK_SECRET is not a Standard Webhooks secret: set it to whsec_ and the base64 of a random key "
            "of at least 24 bytes, for "
            "example the output of `python -c 'import base64, secrets; "
            "print(\"whsec_\" + base64.b64encode(secrets.token_bytes(32)).decode())'`."
        )


def _derive(settings: dict[str, Any], instance_path: Path) -> None:
    """Fill in what follows from other settings, and Flask's own names for them."""
    env = settings["APP_ENV"]
    if not settings["SECRET_KEY"]:
        if env == "development":
            # A log line, not a warning: settings are read before logging is set up, so Python's
            # last-resort handler prints it as one plain line on stderr, where warnings.warn
            # printed a file name and a source line with it at every command.
            log.warning(
                "SECRET_KEY is not set: using a random key for this run, so reset links and "
                "sessions end when the process restarts."
            )
        settings["SECRET_KEY"] = secrets.token_urlsafe(48)
    settings["PUBLIC_BASE_URL"] = (settings["PUBLIC_BASE_URL"] or "http://localhost:5000").rstrip("/")
    if settings["PWNED_PASSWORDS_URL"] is None:
        # Production asks the public API; a laptop or a test suite asks nobody unless told to.
        settings["PWNED_PASSWORDS_URL"] = PWNED_PASSWORDS_RANGE_URL if env == "production" else ""
    settings["PWNED_PASSWORDS_URL"] = settings["PWNED_PASSWORDS_URL"].rstrip("/")
    if settings["AGENT_REQUIRE_TOTP"] is None:
        # The console can reset any customer's password: in production a password alone is not enough.
        settings["AGENT_REQUIRE_TOTP"] = env == "production"
    public = urlsplit(settings["PUBLIC_BASE_URL"])
    hosts = [public.hostname, *settings["TRUSTED_HOSTS"]]
    if env != "production":
        hosts += ["localhost", "127.0.0.1", "[::1]"]
    # Flask refuses any other Host header with a 400, so no URL is ever built from a forged one.
    settings["TRUSTED_HOSTS"] = sorted(set(hosts))
    # The embedded default (SQLite under instance/) creates its own schema at start.
    settings["DATABASE_EMBEDDED"] = not settings["DATABASE_URL"]
    if not settings["DATABASE_URL"]:
        settings["DATABASE_URL"] = f"sqlite:///{(instance_path / 'service.db').resolve()}"
    settings["SQLALCHEMY_DATABASE_URI"] = settings["DATABASE_URL"]
    settings["SQLALCHEMY_ENGINE_OPTIONS"] = {}
    if settings["DATABASE_URL"].startswith("sqlite"):
        # Writers wait for SQLite's one write lock on a lock file, trying again within a
        # millisecond, instead of sleeping in SQLite's busy handler (see the module).
        settings["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] = {"factory": WriterLockConnection}
    if not settings["DATABASE_URL"].startswith("sqlite"):
        # A server can drop a pooled connection (restart, idle timeout): test it before use.
        # A SQLite file cannot, so there the test would only be a "SELECT 1" on every checkout.
        settings["SQLALCHEMY_ENGINE_OPTIONS"].update(
            pool_pre_ping=True,
            pool_size=settings["DB_POOL_SIZE"],
            max_overflow=settings["DB_MAX_OVERFLOW"],
            pool_timeout=settings["DB_POOL_TIMEOUT"],
            pool_recycle=settings["DB_POOL_RECYCLE"],
        )
    settings["LOG_FORMAT"] = settings["LOG_FORMAT"] or ("json" if env == "production" else "text")
    settings["TESTING"] = env == "testing"
    settings["PREFERRED_URL_SCHEME"] = public.scheme
    settings["SESSION_COOKIE_HTTPONLY"] = True
    settings["SESSION_COOKIE_SAMESITE"] = "Lax"
    settings["SESSION_COOKIE_SECURE"] = env == "production"
    # Bodies over 64 KiB are refused with 413 before any view reads them.
    settings["MAX_CONTENT_LENGTH"] = 64 * 1024
    settings["MAX_FORM_MEMORY_SIZE"] = 64 * 1024
    settings["JSON_SORT_KEYS"] = False
    settings["WTF_CSRF_TIME_LIMIT"] = None
    # Over HTTPS Flask-WTF also wants a same-origin Referer, which our Referrer-Policy:
    # no-referrer never lets a browser send; the CSRF token alone protects the forms.
    settings["WTF_CSRF_SSL_STRICT"] = False
    settings["MAIL_SUPPRESS_SEND"] = False
    settings["RATELIMIT_HEADERS_ENABLED"] = False
    # If Redis goes away, limits fall back to this process's memory instead of failing requests.
    settings["RATELIMIT_SWALLOW_ERRORS"] = True
    settings["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = True
    if settings["RATELIMIT_STORAGE_URI"].startswith(("redis", "rediss")):
        timeout = settings["REDIS_SOCKET_TIMEOUT"]
        settings["RATELIMIT_STORAGE_OPTIONS"] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            **settings.get("RATELIMIT_STORAGE_OPTIONS", {}),
        }
