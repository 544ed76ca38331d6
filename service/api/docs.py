"""The API describing itself: the OpenAPI document, and a page that reads it for people."""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template

from service.api.blueprint import api
from service.api.openapi import documented, openapi_document


@api.get("/openapi.json")
@documented(
    "This document",
    description="The OpenAPI 3.1 description of every call under /api/v1, its errors, and the webhooks.",
    responses={200: {"type": "object", "required": ["openapi", "paths"]}},
    tag="docs",
)
def openapi_json() -> dict[str, Any]:
    return openapi_document(current_app)


@api.get("/docs")
@documented(
    "This document, for people",
    description="An HTML page listing every call and webhook, served with the service's own stylesheet.",
    responses={200: {"type": "string"}},
    tag="docs",
    response_type="text/html",
)
def docs_page() -> str:
    return render_template("api_docs.html", document=openapi_document(current_app))
