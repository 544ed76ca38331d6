"""resetdesk: the account and password-reset service. `create_app` builds it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from service.accounts.legacy import LegacySamples
from service.accounts.passwords import build_crypt_context
from service.accounts.throttle import SignInThrottle
from service.api import api
from service.cli import register_cli
from service.console import console
from service.contact.hours import check_contact_settings
from service.contact.templating import register_template_filters
from service.outbox.metrics import OutboxCollector
from service.platform.config import load_config
from service.platform.cookiesessions import register_cookie_sessions
from service.platform.database import prepare_database
from service.platform.errorhandlers import register_errorhandlers
from service.platform.extensions import csrf, db, limiter, mail, migrate
from service.platform.headers import register_security_headers
from service.platform.health import health
from service.platform.i18n import register_i18n
from service.platform.inputs import register_input_checks
from service.platform.logs import configure_logging
from service.platform.metrics import register_metrics
from service.platform.requestids import register_request_ids
from service.resets.policy import ResetPolicy
from service.retention.sweep import RetentionPolicy
from service.web import pages
from service.worker.dispatcher import register_dispatcher

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None) -> Flask:
    """Build the app: the defaults, then the environment, then `config` on top.

    Without `config` (the real service) the environment and a `.env` file are read. With it
    (tests, tools), only what `environ` holds is: a test's settings cannot be undone by
    whatever the shell exported.
    """
    app = Flask(
        __name__,
        instance_path=str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    if config is None:
        load_dotenv(Path.cwd() / ".env", override=False)
        environ = os.environ
    app.config.update(load_config(environ or {}, config, app.instance_path))
    check_contact_settings(app.config)
    if app.config["TRUSTED_PROXIES"]:
        # Client addresses (for rate limits and the audit trail) come from X-Forwarded-For only
        # as far back as the proxies we run; anything a client adds beyond them is ignored.
        proxies = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    register_extensions(app)
    register_cookie_sessions(app)
    register_i18n(app, PROJECT_ROOT / "translations")
    configure_logging(app)
    register_request_ids(app)
    register_input_checks(app)
    register_app_metrics(app)
    register_blueprints(app)
    register_template_filters(app)
    register_dispatcher(app)
    register_errorhandlers(app)
    register_security_headers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    """Bind the extensions, and build once what the rules are handed."""
    os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    mail.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    app.extensions["resetdesk.crypt"] = build_crypt_context(cheap=app.config["PASSWORD_HASH_CHEAP"])
    app.extensions["resetdesk.legacy_samples"] = LegacySamples()
    app.extensions["resetdesk.throttle"] = SignInThrottle(
        app.config["RATELIMIT_STORAGE_URI"],
        app.config["LOGIN_MAX_FAILURES"],
        app.config.get("RATELIMIT_STORAGE_OPTIONS"),
    )
    app.extensions["resetdesk.reset_policy"] = ResetPolicy.from_settings(app.config)
    app.extensions["resetdesk.retention"] = RetentionPolicy.from_settings(app.config)
    prepare_database(app)


def register_app_metrics(app: Flask) -> None:
    """Count requests and serve /metrics, with the outbox's gauges beside the counters."""
    register_metrics(app)
    registry = app.extensions.get("resetdesk.metrics_registry")
    if registry is not None:
        registry.register(OutboxCollector(app))


def register_blueprints(app: Flask) -> None:
    csrf.exempt(api)  # API calls carry a key, not a cookie: CSRF does not apply
    app.register_blueprint(api)
    app.register_blueprint(health)
    app.register_blueprint(pages)
    app.register_blueprint(console)


def register_commands(app: Flask) -> None:
    register_cli(app)
