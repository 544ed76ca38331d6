"""resetdesk: the account and password-reset service. `create_app` builds it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .api import api
from .cli import register_cli
from .config import load_config
from .contact import check_contact_settings
from .database import prepare_database
from .dispatcher import register_dispatcher
from .errorhandlers import register_errorhandlers
from .extensions import csrf, db, limiter, mail, migrate
from .headers import register_security_headers
from .health import health
from .i18n import register_i18n
from .logs import configure_logging
from .metrics import register_metrics
from .passwords import build_crypt_context
from .requestids import register_request_ids
from .support import console
from .templating import register_template_filters
from .throttle import SignInThrottle
from .web import pages
from .webhooks import register_webhooks

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment (and a `.env` file), with `config` on top for tests."""
    app = Flask(
        __name__,
        instance_path=str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    if config is None:
        load_dotenv(Path.cwd() / ".env", override=False)
    app.config.update(load_config(os.environ, config, app.instance_path))
    check_contact_settings(app.config)
    if app.config["TRUSTED_PROXIES"]:
        # Client addresses (for rate limits and the audit trail) come from X-Forwarded-For only
        # as far back as the proxies we run; anything a client adds beyond them is ignored.
        proxies = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    register_extensions(app)
    register_i18n(app, PROJECT_ROOT / "translations")
    configure_logging(app)
    register_request_ids(app)
    register_metrics(app)
    register_blueprints(app)
    register_template_filters(app)
    register_dispatcher(app)
    register_errorhandlers(app)
    register_security_headers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    mail.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    app.extensions["resetdesk.crypt"] = build_crypt_context(cheap=app.config["PASSWORD_HASH_CHEAP"])
    app.extensions["resetdesk.throttle"] = SignInThrottle(
        app.config["RATELIMIT_STORAGE_URI"],
        app.config["LOGIN_MAX_FAILURES"],
        app.config.get("RATELIMIT_STORAGE_OPTIONS"),
    )
    prepare_database(app)
    register_webhooks()


def register_blueprints(app: Flask) -> None:
    csrf.exempt(api)  # API calls carry a key, not a cookie: CSRF does not apply
    app.register_blueprint(api)
    app.register_blueprint(health)
    app.register_blueprint(pages)
    app.register_blueprint(console)


def register_commands(app: Flask) -> None:
    register_cli(app)
