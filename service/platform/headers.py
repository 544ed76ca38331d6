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


def register_security_headers(app: Flask) -> None:
    """Add the headers to every answer, pages and API alike."""
    production = app.config["APP_ENV"] == "production"
    policy = content_security_policy(app.config["LOGO_URL"])

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        # Answers carry account details and reset forms: nothing is to be cached.
        headers.setdefault("Cache-Control", "no-store")
        if production:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
