"""Schemathesis against the served document: for every call, generated requests (valid and
not) never get a 5xx, and every answer has a documented status, content type and shape.
Runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.models import Account

# About 20 seconds a database: `make test` runs it, `make test-fast` leaves it out.
pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per call and per mode (requests that fit the document, and requests that do not): about 25
# calls x 2 modes x this many examples keeps the whole run near 30 seconds per database.
EXAMPLES = 8


@pytest.fixture
def app_settings() -> dict[str, Any]:
    # Rate limits would answer 429 to most of the examples and hide what the calls do.
    return {"RATELIMIT_ENABLED": False}


def test_every_answer_conforms_to_the_document(
    app: Flask, make_account: Callable[..., Account], make_key: Callable[[str], dict[str, str]]
) -> None:
    # The pytest integration (`schemathesis.pytest.from_fixture`) does not run under this
    # pytest, so the test drives schemathesis' strategies with Hypothesis itself.
    make_account("jane")
    admin = make_key("admin")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    strategy = st.one_of(
        operation.as_strategy(generation_mode=mode)
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES * len(operations) * 2, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: Any) -> None:
        case.call_and_validate(headers=admin, checks=CHECKS)

    conforms()
