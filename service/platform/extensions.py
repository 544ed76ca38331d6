"""The Flask extensions, unbound; `create_app` binds them to an app."""

from flask_babel import Babel
from flask_limiter import Limiter
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from service.platform.clients import client_rate_limit_key
from service.platform.modelbase import Base


class Limits(Limiter):
    """Flask-Limiter, which returns at once when limits are off (RATELIMIT_ENABLED=false).

    Off, Flask-Limiter still went through every decorated view's limits on each request,
    found the request exempt and evaluated an empty list. The outcome is the same (nothing is
    counted or refused); this only skips the walk.
    """

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if not self.enabled:
            return
        super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
mail = Mail()
csrf = CSRFProtect()
limiter = Limits(key_func=client_rate_limit_key)
babel = Babel()
