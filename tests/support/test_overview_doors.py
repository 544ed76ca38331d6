"""The desk overview's doors: the API for admin keys (JSON and CSV), the console page for
supervisors (an SVG chart drawn here, its data table, CSV downloads), who is refused, and the
audit event each look leaves."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from werkzeug.test import TestResponse

from service.events import audit
from service.models import Account, AuditEvent, PasswordReset
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.support.agents import create_agent
from tests.formtools import csrf_token_in

AGENT_PASSWORD = "agent horse battery staple"
ZONE = "America/Toronto"
API = "/api/v1/support/overview"
PAGE = "/support/overview"

Headers = dict[str, str]
MakeKey = Callable[[str], Headers]


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"CONTACT_TIMEZONE": ZONE}


def today() -> date:
    return utcnow().astimezone(ZoneInfo(ZONE)).date()


def make_agent(app: Flask, username: str, *, supervisor: bool = False) -> None:
    with app.app_context():
        create_agent(
            db.session, username=username, email=f"{username}@shop.example", password=AGENT_PASSWORD,
            now=utcnow(), supervisor=supervisor,
        )
        db.session.commit()


def signed_in(app: Flask, username: str, *, supervisor: bool, language: str = "en") -> FlaskClient:
    make_agent(app, username, supervisor=supervisor)
    browser = app.test_client()
    browser.set_cookie("lang", language)
    form = browser.get("/support/login")
    token = csrf_token_in(form.get_data(as_text=True))
    answer = browser.post("/support/login", data={"csrf_token": token, "username": username, "password": AGENT_PASSWORD})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return browser


def some_activity(app: Flask, account: Account) -> None:
    """A reset by code and one an agent sent, both used now; a sent mail; alice unlocked someone."""
    now = utcnow()
    with app.app_context():
        for requested_by, via in ((audit.SELF, "reset_code"), ("agent:alice", "reset_link")):
            db.session.add(PasswordReset(
                account_id=account.id, method="link", requested_by=requested_by, secret_hash="x",
                created_at=now, expires_at=now + timedelta(hours=1), used_at=now, used_via=via,
            ))
        audit.record_event(db.session, "mail.sent", actor="outbox", ip=None, now=now)
        audit.record_event(db.session, "account.unlocked", actor="agent:alice", ip=None, now=now, account_id=account.id)
        db.session.commit()


def overview_events(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    with app.app_context():
        rows = db.session.execute(
            select(AuditEvent.actor, AuditEvent.details).where(AuditEvent.type == "support.overview_viewed").order_by(AuditEvent.id)
        ).all()
        return [(actor, details) for actor, details in rows]


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


# --- the API ----------------------------------------------------------------------------------


def test_only_admin_keys_see_the_overview(client: FlaskClient, make_key: MakeKey) -> None:
    for path in (API, API + ".csv"):
        assert client.get(path).status_code == 401
        for role in ("client", "agent"):
            refused = client.get(path, headers=make_key(role))
            assert refused.status_code == 403, path
            assert refused.get_json()["code"] == "forbidden"
        assert client.get(path, headers=make_key("admin")).status_code == 200


def test_the_api_gives_30_days_ending_today_in_the_shops_zone(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    some_activity(app, make_account("jane"))
    make_agent(app, "alice", supervisor=False)
    answer = client.get(API, headers=make_key("admin"))
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["timezone"] == ZONE
    assert len(body["days"]) == 30
    assert body["days"][-1]["date"] == body["to"] == today().isoformat()
    assert body["from"] == (today() - timedelta(days=29)).isoformat()
    assert body["days"][-1]["resets"] == {"self_link": 0, "self_code": 1, "self_temporary_password": 0, "agent": 1}
    assert body["days"][-1]["mail"] == {"sent": 1, "failed": 0}
    assert body["agents"] == [
        {"actor": "agent:alice", "actions": 1, "resets": 0, "unlocks": 1, "freezes": 0, "unfreezes": 0,
         "email_changes": 0, "closures": 0},
    ]
    assert len(client.get(API, query_string={"days": 7}, headers=make_key("admin")).get_json()["days"]) == 7


@pytest.mark.parametrize("days", ["0", "91", "abc", "", "3.5"])
def test_a_bad_days_value_is_a_400_problem(client: FlaskClient, make_key: MakeKey, days: str) -> None:
    admin = make_key("admin")
    for path in (API, API + ".csv"):
        refused = client.get(path, query_string={"days": days}, headers=admin)
        assert refused.status_code == 400
        assert refused.mimetype == "application/problem+json"
        assert refused.get_json()["code"] == "validation_failed"
        assert refused.get_json()["errors"][0]["field"] == "days"


def test_the_api_csv_has_one_row_a_day_or_one_an_actor(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    some_activity(app, make_account("jane"))
    admin = make_key("admin")
    answer = client.get(API + ".csv", query_string={"days": 7}, headers=admin)
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.reader(io.StringIO(text(answer))))
    assert rows[0][:2] == ["date", "resets_self_link"] and len(rows[0]) == 9
    assert [row[0] for row in rows[1:]] == [(today() - timedelta(days=6 - n)).isoformat() for n in range(7)]
    assert rows[-1][1:5] == ["0", "1", "0", "1"]
    agents = list(csv.reader(io.StringIO(text(client.get(API + ".csv", query_string={"table": "agents"}, headers=admin)))))
    assert agents == [
        ["actor", "actions", "resets", "unlocks", "freezes", "unfreezes", "email_changes", "closures"],
        ["agent:alice", "1", "0", "1", "0", "0", "0", "0"],
    ]
    refused = client.get(API + ".csv", query_string={"table": "people"}, headers=admin)
    assert refused.status_code == 400 and refused.get_json()["errors"][0]["field"] == "table"


def test_each_look_over_the_api_is_audited(app: Flask, client: FlaskClient, make_key: MakeKey) -> None:
    admin = make_key("admin")
    client.get(API, query_string={"days": 7}, headers=admin)
    client.get(API + ".csv", query_string={"table": "agents"}, headers=admin)
    client.get(API, headers=make_key("agent"))  # refused: nothing seen, nothing recorded
    assert overview_events(app) == [
        ("key:admin-0", {"days": 7, "shown_as": "json"}),
        ("key:admin-0", {"days": 30, "shown_as": "csv", "table": "agents"}),
    ]


def test_the_document_describes_both_calls_for_admin_keys(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    for path, content_type in ((API, "application/json"), (API + ".csv", "text/csv")):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [{"bearer": ["admin"]}]
        assert content_type in operation["responses"]["200"]["content"]
        assert {parameter["name"] for parameter in operation["parameters"]} >= {"days"}


# --- the console page -------------------------------------------------------------------------


def test_a_supervisor_sees_the_chart_the_table_and_the_downloads(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    some_activity(app, make_account("jane"))
    browser = signed_in(app, "alice", supervisor=True)
    page = browser.get(PAGE)
    assert page.status_code == 200
    html = text(page)
    svg = re.search(r"<svg\b[^>]*>.*?</svg>", html, re.DOTALL)
    assert svg, html
    chart = svg.group(0)
    assert 'role="img"' in chart
    labelled_by = re.search(r'aria-labelledby="([^"]+)"', chart)
    assert labelled_by
    for element_id in labelled_by.group(1).split():
        assert f'id="{element_id}"' in chart
    assert re.search(r"<title\b[^>]*>[^<]*Resets per day", chart)
    assert re.search(r"<desc\b[^>]*>[^<]*resets done: 2 \(link 0, code 1, temporary password 0, sent by support 1\)", chart)
    # One bar segment per route used today: the code and the agent's reset.
    assert len(re.findall(r'<rect\b[^>]*class="bar ', chart)) == 2
    # The accessible equivalent: a table with a row a day, and the agents' table.
    assert len(re.findall(r'<th scope="row">', html)) >= 30
    assert "Actions per agent" in html and ">alice<" in html
    assert 'href="/support/overview.csv?days=30&amp;table=days"' in html
    assert 'href="/support/overview.csv?days=30&amp;table=agents"' in html
    # Nothing is fetched from elsewhere: the chart is in the page, drawn without script (the
    # only script on the page is the layout's own file, for password fields).
    assert "<script" not in chart and "http" not in chart.replace("http://www.w3.org/2000/svg", "")
    assert re.findall(r"<script\b[^>]*>", html) == [re.search(r'<script src="/static/reveal-password.js"[^>]*>', html).group(0)]
    assert overview_events(app) == [("agent:alice", {"days": 30, "shown_as": "page"})]


def test_a_supervisor_downloads_the_csv_with_the_console_session(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    some_activity(app, make_account("jane"))
    browser = signed_in(app, "alice", supervisor=True)
    answer = browser.get(PAGE + ".csv", query_string={"days": 3, "table": "days"})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(text(answer))))
    assert len(rows) == 4 and rows[-1][0] == today().isoformat()
    agents = browser.get(PAGE + ".csv", query_string={"table": "agents"})
    assert list(csv.reader(io.StringIO(text(agents))))[1][:2] == ["agent:alice", "1"]


def test_an_agent_who_is_no_supervisor_gets_a_friendly_403_and_no_link(app: Flask) -> None:
    browser = signed_in(app, "bob", supervisor=False)
    for path in (PAGE, PAGE + ".csv"):
        refused = browser.get(path)
        assert refused.status_code == 403
        assert refused.mimetype == "text/html"
        assert "supervisor" in text(refused) and "<svg" not in text(refused)
    assert "/support/overview" not in text(browser.get("/support"))
    assert overview_events(app) == []


def test_the_console_links_the_overview_for_supervisors(app: Flask) -> None:
    browser = signed_in(app, "alice", supervisor=True)
    assert 'href="/support/overview"' in text(browser.get("/support"))


def test_strangers_are_sent_to_sign_in(client: FlaskClient) -> None:
    for path in (PAGE, PAGE + ".csv"):
        answer = client.get(path)
        assert answer.status_code == 302 and answer.headers["Location"].endswith("/support/login")


@pytest.mark.parametrize("query", [{"days": "0"}, {"days": "500"}, {"days": "x"}, {"table": "nope"}])
def test_bad_parameters_get_a_friendly_400_page(app: Flask, query: dict[str, str]) -> None:
    browser = signed_in(app, "alice", supervisor=True)
    path = PAGE + ".csv" if "table" in query else PAGE
    answer = browser.get(path, query_string=query)
    assert answer.status_code == 400
    assert answer.mimetype == "text/html"


def test_the_page_speaks_french(app: Flask, make_account: Callable[..., Account]) -> None:
    some_activity(app, make_account("jane"))
    browser = signed_in(app, "alice", supervisor=True, language="fr")
    html = text(browser.get(PAGE))
    assert '<html lang="fr">' in html
    assert "Actions par agent" in html
    assert "Réinitialisations par jour" in html
    assert "Actions per agent" not in html


def test_a_supervisor_flag_removed_closes_the_page_at_once(app: Flask, runner: FlaskCliRunner) -> None:
    browser = signed_in(app, "alice", supervisor=True)
    assert browser.get(PAGE).status_code == 200
    assert runner.invoke(args=["agents", "supervisor", "alice", "--off"]).exit_code == 0
    assert browser.get(PAGE).status_code == 403


def test_the_chart_is_drawn_for_any_number_of_days(app: Flask) -> None:
    browser = signed_in(app, "alice", supervisor=True)
    for days in (1, 7, 90):
        html = text(browser.get(PAGE, query_string={"days": days}))
        assert html.count('<th scope="row">') >= days
        # An empty period still has its axes and says it is empty.
        assert "No reset was done in these days." in html
