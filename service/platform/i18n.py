"""Languages: English and French. A page speaks the visitor's explicit choice (remembered in a
cookie), else their browser's Accept-Language; a mail speaks the account's language, else the
language of the page that asked for it. The API always answers in English."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from babel.support import NullTranslations
from flask import Flask, has_request_context, request
from flask_babel import force_locale, get_locale, get_translations, gettext
from markupsafe import Markup

from service.platform.config import ConfigError
from service.platform.extensions import babel

LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "lang"


def supported_language(code: str | None) -> str | None:
    """The code if we speak it (`fr-CA` counts as `fr`), else None."""
    if not code:
        return None
    base = code.strip().lower().replace("_", "-").split("-")[0]
    return base if base in LANGUAGES else None


def select_language() -> str:
    """The language of this request's pages."""
    if not has_request_context() or request.path.startswith("/api/"):
        return DEFAULT_LANGUAGE
    chosen = supported_language(request.cookies.get(LANGUAGE_COOKIE))
    return chosen or request.accept_languages.best_match(LANGUAGES) or DEFAULT_LANGUAGE


def current_language() -> str:
    """The language in force now (a request's, or the one a mail is being written in)."""
    return str(get_locale() or DEFAULT_LANGUAGE)


class LazyText:
    """A translation made when it is shown, whose parameters stay text when it lands in HTML.

    flask_babel's lazy strings call themselves safe HTML as a whole (`__html__`), parameters
    included, so Jinja would print a ticket typed as `<img ...>` as markup. Here the message
    (ours, trusted) is kept as markup and each parameter is escaped into it; as plain text (a
    mail's text part) the parameters read as typed.
    """

    def __init__(self, message: str, params: dict[str, object]) -> None:
        self._message = message
        self._params = params

    def __str__(self) -> str:
        return str(gettext(self._message, **self._params))

    def __repr__(self) -> str:
        return f"lazy_text({self._message!r})"

    def __html__(self) -> Markup:
        return Markup(gettext(self._message)) % self._params


def lazy_text(message: str, **params: object) -> LazyText:
    """`lazy_gettext` for a message with parameters that come from people (a ticket, a name):
    use it, not `_l`, whenever such a message may be shown in HTML."""
    return LazyText(message, params)


# The catalogue of the language `speaking` forces, looked up once for everything written in it.
_SPOKEN: ContextVar[NullTranslations | None] = ContextVar("resetdesk_spoken", default=None)


@contextmanager
def speaking(language: str | None) -> Iterator[None]:
    """Write what follows (a mail, say) in `language`, or in English when it is unknown."""
    with force_locale(supported_language(language) or DEFAULT_LANGUAGE):
        token = _SPOKEN.set(get_translations())
        try:
            yield
        finally:
            _SPOKEN.reset(token)


def _catalogue() -> NullTranslations:
    # Flask-Babel finds the catalogue through the app and request contexts at every string:
    # a mail's templates translate about fifteen, and the look-ups cost more than the rest
    # of rendering them. Within `speaking` the catalogue is known already.
    return _SPOKEN.get() or get_translations()


def _install_template_gettext(app: Flask) -> None:
    """The templates' gettext family, as Flask-Babel installs it, through `_catalogue`."""
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda string: _catalogue().ugettext(string),
        ngettext=lambda singular, plural, number: _catalogue().ungettext(singular, plural, number),
        newstyle=True,
        pgettext=lambda context, string: _catalogue().upgettext(context, string),
        npgettext=lambda context, singular, plural, number: _catalogue().unpgettext(context, singular, plural, number),
    )


def uncompiled_languages(translations: Path) -> list[str]:
    """The languages whose catalog has no compiled `.mo`.

    Without it gettext quietly answers in English: a French customer's mail would arrive in
    English with nothing in any log to say why.
    """
    missing = []
    for language in LANGUAGES:
        if language == DEFAULT_LANGUAGE:
            continue
        if not (translations / language / "LC_MESSAGES" / "messages.mo").exists():
            missing.append(language)
    return missing


def check_catalogs(translations: Path, *, production: bool) -> None:
    """Refuse to serve production without every language compiled; elsewhere, say so in the log."""
    missing = uncompiled_languages(translations)
    if not missing:
        return
    message = (
        f"The translations of {', '.join(missing)} are not compiled: run "
        f"`make translations-compile` (or `pybabel compile -d translations`); until then that mail and "
        f"those pages come in English."
    )
    if production:
        raise ConfigError(message)
    logging.getLogger(__name__).warning(message)


def register_i18n(app: Flask, translations: Path) -> None:
    check_catalogs(translations, production=app.config["APP_ENV"] == "production")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(translations)
    babel.init_app(app, locale_selector=select_language)
    _install_template_gettext(app)

    @app.context_processor
    def language_context() -> dict[str, object]:
        return {"languages": LANGUAGES, "current_language": current_language}
