"""Security headers on every answer: a strict CSP, no sniffing, no referrer, no framing, no caching."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response


def content_security_policy(logo_url: str) -> str:
    """Nothing but this site's own styles, images (and the shop's logo) and script files.

    Scripts only from files on this site (the show-password toggle), never inline: no
    'unsafe-inline', no 'unsafe-eval', so an injected `<script>` or `onclick=` does not run.
    """
    logo = urlsplit(logo_url)
    logo_origin = f" {logo.scheme}://{logo.netloc}" if logo.scheme and logo.netloc else ""
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'{logo_origin}; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


def security_headers(logo_url: str, *, production: bool) -> list[tuple[str, str]]:
    """The headers every answer carries unless its view set one of them itself."""
    headers = [
        ("Content-Security-Policy", content_security_policy(logo_url)),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        # Answers carry account details and reset forms: nothing is to be cached.
        ("Cache-Control", "no-store"),
    ]
    if production:
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return headers


def register_security_headers(app: Flask) -> None:
    """Add the headers to every answer, pages and API alike."""
    defaults = [(name.lower(), name, value) for name, value in security_headers(
        app.config["LOGO_URL"], production=app.config["APP_ENV"] == "production"
    )]

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        # One pass over the answer's headers, then one extend: a `setdefault` per header looked
        # each one up (a raised and caught KeyError for every missing one) on every request.
        present = {name.lower() for name, _value in response.headers}
        response.headers.extend([(name, value) for key, name, value in defaults if key not in present])
        return response
