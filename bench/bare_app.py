"""A bare Flask app for a baseline: `gunicorn --pythonpath bench bare_app:app`.

One JSON POST endpoint at the same path as the service's reset request, which parses the JSON
body and answers 202 {"status": "accepted"}, and GET /healthz for the harness. No database, no
extensions: what Flask and gunicorn alone cost per request. It lives in bench/ only; nothing
is added to the service package.
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v1/password-resets")
def accept() -> tuple[dict[str, str], int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("username"), str):
        return {"status": "invalid"}, 400
    return {"status": "accepted"}, 202


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
