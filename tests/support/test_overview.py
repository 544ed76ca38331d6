"""The desk overview's counts: completed resets per day by route, mail sent and failed, sign-in
throttles and freezes, and actions per agent, in days of the shop's time zone."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.events import audit
from service.models import Account, OutboxMessage, PasswordReset
from service.outbox.queue import open_body
from service.platform.clock import utcnow
from service.platform.errors import ValidationFailed
from service.platform.extensions import db
from service.resets.issuing import issue_reset
from service.resets.policy import reset_policy
from service.support.agents import create_agent
from service.support.overview import (
    DEFAULT_DAYS,
    MAX_DAYS,
    ROUTES,
    agents_csv,
    days_csv,
    desk_overview,
    overview_json,
    parse_days,
)
from tests.conftest import OTHER_STRONG_PASSWORD

NEW_YORK = ZoneInfo("America/New_York")
# New York leaves daylight time on 2026-11-01: that day runs from 04:00 UTC to 05:00 UTC the
# next day (25 hours). NOW is 10:00 on 2026-11-02 there.
NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
FIVE_DAYS = [date(2026, 10, 29), date(2026, 10, 30), date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def record(event_type: str, when: datetime, actor: str = audit.SELF) -> None:
    audit.record_event(db.session, event_type, actor=actor, ip=None, now=when)


def used_reset(account_id: int, used_at: datetime, *, method: str = "link", requested_by: str = audit.SELF,
               used_via: str | None = "reset_link") -> None:
    """A reset row as the rules leave it once used."""
    db.session.add(
        PasswordReset(
            account_id=account_id, method=method, requested_by=requested_by, secret_hash="not a real hash",
            created_at=used_at - timedelta(minutes=5), expires_at=used_at + timedelta(hours=1),
            used_at=used_at, used_via=used_via,
        )
    )


# --- days in the shop's time zone -------------------------------------------------------------


def test_each_event_counts_on_its_day_in_the_shops_time_zone_across_the_changeover(app: Flask) -> None:
    with app.app_context():
        record("mail.sent", at("2026-10-29T03:59:59"))  # 23:59:59 on Oct 28 in New York: before the window
        record("mail.sent", at("2026-10-29T04:00:00"))  # midnight, Oct 29 (daylight time, UTC-4)
        record("mail.sent", at("2026-11-01T03:59:59"))  # still Oct 31
        record("mail.sent", at("2026-11-01T04:00:00"))  # Nov 1 begins
        record("mail.failed", at("2026-11-02T04:59:59"))  # 23:59:59 on Nov 1 (standard time, UTC-5)
        record("sign_in.throttled", at("2026-11-02T05:00:00"))  # Nov 2 begins
        record("account.frozen", NOW, actor="agent:alice")
        db.session.commit()
        overview = desk_overview(db.session, days=5, zone=NEW_YORK, now=NOW)
    assert [day.date for day in overview.days] == FIVE_DAYS
    assert [day.mail_sent for day in overview.days] == [1, 0, 1, 1, 0]
    assert [day.mail_failed for day in overview.days] == [0, 0, 0, 1, 0]
    assert [day.throttles for day in overview.days] == [0, 0, 0, 0, 1]
    assert [day.freezes for day in overview.days] == [0, 0, 0, 0, 1]
    assert (overview.totals.mail_sent, overview.totals.mail_failed) == (3, 1)


def test_the_window_ends_with_today_and_knows_nothing_before_it(app: Flask) -> None:
    with app.app_context():
        overview = desk_overview(db.session, days=DEFAULT_DAYS, zone=NEW_YORK, now=NOW)
        one_day = desk_overview(db.session, days=1, zone=ZoneInfo("Asia/Tokyo"), now=NOW)
    assert len(overview.days) == 30
    assert overview.days[-1].date == date(2026, 11, 2)
    assert overview.days[0].date == date(2026, 10, 4)
    assert all(later.date - earlier.date == timedelta(days=1) for earlier, later in pairwise(overview.days))
    assert all(sum(day.resets.values()) == 0 and day.mail_sent == 0 for day in overview.days)
    # 15:00 UTC is already the next day in Tokyo.
    assert [day.date for day in one_day.days] == [date(2026, 11, 3)]


def test_a_half_hour_zone_is_bucketed_by_its_own_midnight(app: Flask) -> None:
    # Newfoundland is UTC-3:30 in November: an hourly bucket would put these on one day.
    st_johns = ZoneInfo("America/St_Johns")
    with app.app_context():
        record("mail.sent", at("2026-11-02T03:29:00"))  # 23:59 on Nov 1
        record("mail.sent", at("2026-11-02T03:31:00"))  # 00:01 on Nov 2
        db.session.commit()
        overview = desk_overview(db.session, days=2, zone=st_johns, now=NOW)
    assert [(day.date, day.mail_sent) for day in overview.days] == [(date(2026, 11, 1), 1), (date(2026, 11, 2), 1)]


# --- resets by route --------------------------------------------------------------------------


def test_resets_count_on_the_day_they_are_used_by_route(app: Flask, make_account: Callable[..., Account]) -> None:
    account = make_account("jane")
    with app.app_context():
        used_reset(account.id, at("2026-11-01T03:59:00"))  # Oct 31
        used_reset(account.id, at("2026-11-01T04:01:00"), used_via="reset_code")
        used_reset(account.id, at("2026-11-02T04:30:00"), method="temporary_password", used_via="temporary_password")
        used_reset(account.id, at("2026-11-02T05:30:00"), requested_by="agent:alice")
        used_reset(account.id, at("2026-11-02T06:00:00"), requested_by="key:helpdesk", used_via="reset_code")
        used_reset(account.id, at("2026-11-02T06:30:00"), method="temporary_password", requested_by="cli",
                   used_via="temporary_password")
        # Issued in the window but never used: not a reset done.
        db.session.add(PasswordReset(account_id=account.id, method="link", requested_by=audit.SELF, secret_hash="x",
                                     created_at=NOW - timedelta(hours=1), expires_at=NOW + timedelta(hours=1)))
        db.session.commit()
        overview = desk_overview(db.session, days=5, zone=NEW_YORK, now=NOW)
    by_day = {day.date: day.resets for day in overview.days}
    assert by_day[date(2026, 10, 31)] == {"self_link": 1, "self_code": 0, "self_temporary_password": 0, "agent": 0}
    assert by_day[date(2026, 11, 1)] == {"self_link": 0, "self_code": 1, "self_temporary_password": 1, "agent": 0}
    assert by_day[date(2026, 11, 2)] == {"self_link": 0, "self_code": 0, "self_temporary_password": 0, "agent": 3}
    assert overview.totals.resets == {"self_link": 1, "self_code": 1, "self_temporary_password": 1, "agent": 3}
    assert tuple(overview.totals.resets) == ROUTES


def _mailed_secret(app: Flask, account_id: int, method: str, requested_by: str) -> str:
    """Issue a reset with the rule and return the body of its mail."""
    with app.app_context():
        account = db.session.get(Account, account_id)
        issue_reset(db.session, account, method, policy=reset_policy(), requested_by=requested_by, ip=None, now=utcnow())
        db.session.commit()
        return open_body(db.session.scalars(select(OutboxMessage.text_body).order_by(OutboxMessage.id.desc())).first())


def _token(body: str) -> str:
    match = re.search(r"/reset-password/(?!code)(\S+)", body)
    assert match, body
    return match.group(1)


def _code(body: str) -> str:
    match = re.search(r"^ {4}([A-Z0-9]+-[A-Z0-9]+)\r?$", body, re.MULTILINE)
    assert match, body
    return match.group(1)


def _temporary_password(body: str) -> str:
    match = re.search(r"^ {4}(\S+)\r?$", body, re.MULTILINE)
    assert match, body
    return match.group(1)


def test_each_way_of_using_a_reset_is_told_apart(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], client_key: dict[str, str]
) -> None:
    """Through the real doors: a link, a code, a temporary password, and a reset an agent sent."""
    confirm = "/api/v1/password-resets/confirm"
    link_user, code_user, temporary_user, agent_user = (
        make_account(name, f"{name}@example.com") for name in ("lina", "cody", "tess", "aggie")
    )
    body = _mailed_secret(app, link_user.id, "link", audit.SELF)
    assert client.post(confirm, json={"token": _token(body), "new_password": OTHER_STRONG_PASSWORD}).status_code == 204
    body = _mailed_secret(app, code_user.id, "link", audit.SELF)
    answer = client.post(confirm, json={"username": "cody", "code": _code(body), "new_password": OTHER_STRONG_PASSWORD})
    assert answer.status_code == 204
    body = _mailed_secret(app, temporary_user.id, "temporary_password", audit.SELF)
    signed_in = client.post("/api/v1/auth/verify", json={"username": "tess", "password": _temporary_password(body)},
                            headers=client_key)
    assert signed_in.status_code == 200 and signed_in.get_json()["must_change_password"] is True
    body = _mailed_secret(app, agent_user.id, "link", "agent:alice")
    assert client.post(confirm, json={"token": _token(body), "new_password": OTHER_STRONG_PASSWORD}).status_code == 204
    with app.app_context():
        overview = desk_overview(db.session, days=1, zone=NEW_YORK, now=utcnow())
    assert overview.days[-1].resets == {"self_link": 1, "self_code": 1, "self_temporary_password": 1, "agent": 1}


# --- actions per agent ------------------------------------------------------------------------


def test_actions_are_counted_per_agent_and_key_with_idle_agents_listed(app: Flask) -> None:
    with app.app_context():
        for name in ("alice", "bob"):
            create_agent(db.session, username=name, email=f"{name}@shop.example", password=None, now=NOW - timedelta(days=40))
        record("reset.issued", NOW - timedelta(hours=1), actor="agent:alice")
        record("reset.issued", NOW - timedelta(days=2), actor="agent:alice")
        record("reset.requested", NOW - timedelta(hours=1), actor="agent:alice")  # the same reset, asked
        record("account.unlocked", NOW - timedelta(hours=2), actor="agent:alice")
        record("account.email_change_requested", NOW - timedelta(hours=3), actor="agent:alice")
        record("account.closed", NOW - timedelta(hours=3), actor="agent:alice")
        record("account.frozen", NOW - timedelta(hours=2), actor="key:helpdesk")
        record("account.unfrozen", NOW - timedelta(hours=1), actor="key:helpdesk")
        record("support.viewed", NOW - timedelta(hours=1), actor="agent:bob")  # looking is not acting
        record("reset.issued", NOW - timedelta(days=6), actor="agent:bob")  # before the window
        record("reset.issued", NOW - timedelta(hours=1), actor="cli")  # the shell is no agent
        record("account.frozen", NOW - timedelta(hours=1), actor=audit.SELF)  # "this wasn't me"
        db.session.commit()
        overview = desk_overview(db.session, days=5, zone=NEW_YORK, now=NOW)
    assert [(agent.actor, agent.total) for agent in overview.agents] == [
        ("agent:alice", 5), ("key:helpdesk", 2), ("agent:bob", 0),
    ]
    alice = overview.agents[0]
    assert alice.counts == {
        "resets": 2, "unlocks": 1, "freezes": 0, "unfreezes": 0, "email_changes": 1, "closures": 1,
    }
    assert overview.agents[1].counts["freezes"] == 1 and overview.agents[1].counts["unfreezes"] == 1
    # The two freezes (the key's and the customer's own) are on the day's freeze count.
    assert overview.days[-1].freezes == 2


# --- what leaves the service ------------------------------------------------------------------


def test_the_json_and_csv_forms_carry_the_same_counts(app: Flask, make_account: Callable[..., Account]) -> None:
    account = make_account("jane")
    with app.app_context():
        create_agent(db.session, username="alice", email="alice@shop.example", password=None, now=NOW)
        used_reset(account.id, at("2026-11-01T12:00:00"), used_via="reset_code")
        record("mail.sent", at("2026-11-01T12:00:00"))
        record("account.unlocked", at("2026-11-02T12:00:00"), actor="agent:alice")
        db.session.commit()
        overview = desk_overview(db.session, days=3, zone=NEW_YORK, now=NOW)
    answer = overview_json(overview)
    assert answer["timezone"] == "America/New_York"
    assert (answer["from"], answer["to"]) == ("2026-10-31", "2026-11-02")
    assert answer["days"][1] == {
        "date": "2026-11-01",
        "resets": {"self_link": 0, "self_code": 1, "self_temporary_password": 0, "agent": 0},
        "mail": {"sent": 1, "failed": 0},
        "throttles": 0,
        "freezes": 0,
    }
    assert answer["totals"]["resets"]["self_code"] == 1 and answer["totals"]["mail"]["sent"] == 1
    assert answer["agents"] == [
        {"actor": "agent:alice", "actions": 1, "resets": 0, "unlocks": 1, "freezes": 0, "unfreezes": 0,
         "email_changes": 0, "closures": 0},
    ]
    rows = list(csv.reader(io.StringIO(days_csv(overview))))
    assert rows[0] == [
        "date", "resets_self_link", "resets_self_code", "resets_self_temporary_password", "resets_agent",
        "mail_sent", "mail_failed", "throttles", "freezes",
    ]
    assert rows[1:] == [
        ["2026-10-31", "0", "0", "0", "0", "0", "0", "0", "0"],
        ["2026-11-01", "0", "1", "0", "0", "1", "0", "0", "0"],
        ["2026-11-02", "0", "0", "0", "0", "0", "0", "0", "0"],
    ]
    agent_rows = list(csv.reader(io.StringIO(agents_csv(overview))))
    assert agent_rows == [
        ["actor", "actions", "resets", "unlocks", "freezes", "unfreezes", "email_changes", "closures"],
        ["agent:alice", "1", "0", "1", "0", "0", "0", "0"],
    ]


@pytest.mark.parametrize("raw", ["0", "91", "-1", "abc", "7.5", "1e2", " ", "٣", "9" * 50])
def test_a_days_value_outside_1_to_90_is_refused(app: Flask, raw: str) -> None:
    with app.test_request_context(), pytest.raises(ValidationFailed) as refused:
        parse_days(raw)
    assert refused.value.errors[0].field == "days"


def test_days_default_to_30_and_take_any_whole_number_up_to_90(app: Flask) -> None:
    with app.test_request_context():
        assert parse_days(None) == DEFAULT_DAYS == 30
        assert [parse_days(raw) for raw in ("1", "7", "90")] == [1, 7, MAX_DAYS]
