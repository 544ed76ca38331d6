"""Customer-service hours: reading them, open or closed at a moment (DST included), and the API."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from flask.testing import FlaskClient

from service import create_app
from service.contact.hours import OpeningPeriod, describe_hours, opening_state, parse_hours, parse_timezone
from service.platform.config import ConfigError
from tests import conftest

NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = frozenset(range(5))


def at(zone: ZoneInfo, *args: int) -> datetime:
    """A moment given as local wall-clock time in `zone`."""
    return datetime(*args, tzinfo=zone)


# --- parse_hours ------------------------------------------------------------------------------


def test_parse_hours_reads_a_weekday_range() -> None:
    assert parse_hours("Mon-Fri 09:00-18:00") == [OpeningPeriod(WEEKDAYS, time(9), time(18))]


@pytest.mark.parametrize("separator", ["; ", ",", " ;  "])
def test_parse_hours_reads_several_segments(separator: str) -> None:
    assert parse_hours(f"Mon-Fri 09:00-18:00{separator}Sat 10:00-14:00") == [
        OpeningPeriod(WEEKDAYS, time(9), time(18)),
        OpeningPeriod(frozenset({5}), time(10), time(14)),
    ]


def test_parse_hours_ignores_case_and_extra_spaces() -> None:
    assert parse_hours("  MON-fri   9:00-18:00 ") == parse_hours("Mon-Fri 09:00-18:00")


def test_parse_hours_reads_a_range_across_the_weekend() -> None:
    [period] = parse_hours("Fri-Mon 10:00-16:00")
    assert period.weekdays == frozenset({4, 5, 6, 0})


def test_parse_hours_reads_24_00_as_midnight() -> None:
    [period] = parse_hours("Sat 20:00-24:00")
    assert period.end == time.max


@pytest.mark.parametrize(
    "hours",
    [
        "",
        ";",
        "Mon-Fri",
        "Mon-Fri 9-18",
        "Funday 09:00-18:00",
        "Mon-Xyz 09:00-18:00",
        "Mon 18:00-09:00",
        "Mon 09:00-09:00",
        "Mon 25:00-26:00",
        "Mon 09:60-10:00",
        "Mon-Fri 09:00-18:00; whenever",
    ],
    ids=repr,
)
def test_parse_hours_refuses_what_it_cannot_read(hours: str) -> None:
    with pytest.raises(ConfigError, match="CONTACT_HOURS"):
        parse_hours(hours)


def test_parse_timezone_refuses_an_unknown_zone() -> None:
    assert parse_timezone("America/Toronto") == ZoneInfo("America/Toronto")
    with pytest.raises(ConfigError, match="CONTACT_TIMEZONE"):
        parse_timezone("Mars/Olympus_Mons")
    with pytest.raises(ConfigError, match="CONTACT_TIMEZONE"):
        parse_timezone("../etc/passwd")


# --- opening_state ----------------------------------------------------------------------------


def test_open_on_a_weekday_morning_until_closing_time() -> None:
    state = opening_state(parse_hours("Mon-Fri 09:00-18:00"), NEW_YORK, at(NEW_YORK, 2026, 11, 25, 10, 0))
    assert state.open_now is True
    assert state.closes_at == at(NEW_YORK, 2026, 11, 25, 18, 0)


def test_summer_hours_follow_daylight_saving_time() -> None:
    # 13:30 UTC is 9:30 in New York in July (EDT, UTC-4): open.
    state = opening_state(parse_hours("Mon-Fri 09:00-18:00"), NEW_YORK, datetime(2026, 7, 15, 13, 30, tzinfo=UTC))
    assert state.open_now is True
    assert state.closes_at == datetime(2026, 7, 15, 22, 0, tzinfo=UTC)


def test_winter_hours_follow_standard_time() -> None:
    # The same 13:30 UTC is 8:30 in New York in January (EST, UTC-5): closed until 14:00 UTC.
    state = opening_state(parse_hours("Mon-Fri 09:00-18:00"), NEW_YORK, datetime(2026, 1, 14, 13, 30, tzinfo=UTC))
    assert state.open_now is False
    assert state.next_open == datetime(2026, 1, 14, 14, 0, tzinfo=UTC)


def test_closing_time_itself_is_closed() -> None:
    state = opening_state(parse_hours("Mon-Fri 09:00-18:00"), NEW_YORK, at(NEW_YORK, 2026, 11, 25, 18, 0))
    assert state.open_now is False
    assert state.next_open == at(NEW_YORK, 2026, 11, 26, 9, 0)


def test_closed_on_friday_evening_opens_again_on_monday() -> None:
    state = opening_state(parse_hours("Mon-Fri 09:00-18:00"), NEW_YORK, at(NEW_YORK, 2026, 11, 27, 19, 0))
    assert state.open_now is False
    assert state.next_open == at(NEW_YORK, 2026, 11, 30, 9, 0)
    assert state.next_open.weekday() == 0


def test_a_saturday_segment_is_open_on_saturday_and_then_monday_is_next() -> None:
    periods = parse_hours("Mon-Fri 09:00-18:00; Sat 10:00-14:00")
    assert opening_state(periods, NEW_YORK, at(NEW_YORK, 2026, 11, 28, 11, 0)).open_now is True
    after = opening_state(periods, NEW_YORK, at(NEW_YORK, 2026, 11, 28, 15, 0))
    assert after.open_now is False
    assert after.next_open == at(NEW_YORK, 2026, 11, 30, 9, 0)
    before = opening_state(periods, NEW_YORK, at(NEW_YORK, 2026, 11, 28, 8, 0))
    assert before.next_open == at(NEW_YORK, 2026, 11, 28, 10, 0)


def test_a_lunch_break_between_two_segments_on_one_day() -> None:
    periods = parse_hours("Mon-Fri 13:00-17:00; Mon-Fri 09:00-12:00")  # given out of order
    lunch = opening_state(periods, NEW_YORK, at(NEW_YORK, 2026, 11, 25, 12, 30))
    assert lunch.open_now is False
    assert lunch.next_open == at(NEW_YORK, 2026, 11, 25, 13, 0)
    morning = opening_state(periods, NEW_YORK, at(NEW_YORK, 2026, 11, 25, 7, 0))
    assert morning.next_open == at(NEW_YORK, 2026, 11, 25, 9, 0)
    afternoon = opening_state(periods, NEW_YORK, at(NEW_YORK, 2026, 11, 25, 14, 0))
    assert afternoon.open_now is True
    assert afternoon.closes_at == at(NEW_YORK, 2026, 11, 25, 17, 0)


def test_a_day_that_ends_at_midnight_is_open_late_in_the_evening() -> None:
    state = opening_state(parse_hours("Sat 20:00-24:00"), NEW_YORK, at(NEW_YORK, 2026, 11, 28, 23, 30))
    assert state.open_now is True


def test_the_same_moment_is_open_in_one_zone_and_closed_in_another() -> None:
    periods = parse_hours("Mon-Fri 09:00-18:00")
    moment = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10:00 in New York, 07:00 in Vancouver
    assert opening_state(periods, NEW_YORK, moment).open_now is True
    assert opening_state(periods, ZoneInfo("America/Vancouver"), moment).open_now is False


# --- describe_hours ---------------------------------------------------------------------------


def test_describe_hours_reads_like_a_person_wrote_it() -> None:
    assert describe_hours(parse_hours("Mon-Fri 09:00-18:00; Sat 10:00-14:30")) == [
        "Monday to Friday, 9:00 AM to 6:00 PM",
        "Saturday, 10:00 AM to 2:30 PM",
    ]


def test_describe_hours_says_midnight_and_noon_plainly() -> None:
    assert describe_hours(parse_hours("Sun 12:00-24:00")) == ["Sunday, 12:00 PM to midnight"]


@pytest.mark.parametrize(
    ("hours", "described"),
    [
        ("Fri-Mon 10:00-16:00", "Friday to Monday, 10:00 AM to 4:00 PM"),
        ("Sun-Tue 10:00-16:00", "Sunday to Tuesday, 10:00 AM to 4:00 PM"),
        ("Mon-Sun 10:00-16:00", "Monday to Sunday, 10:00 AM to 4:00 PM"),
    ],
)
def test_describe_hours_of_a_range_across_the_weekend_starts_on_its_first_day(hours: str, described: str) -> None:
    assert describe_hours(parse_hours(hours)) == [described]


# --- settings at start ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("CONTACT_HOURS", "whenever we feel like it"),
        ("CONTACT_HOURS", "Mon 18:00-09:00"),
        ("CONTACT_TIMEZONE", "Nowhere/Special"),
    ],
)
def test_create_app_refuses_hours_or_a_zone_it_cannot_read(tmp_path: Path, setting: str, value: str) -> None:
    settings = conftest.test_settings(f"sqlite:///{tmp_path / 'contact.db'}", **{setting: value})
    with pytest.raises(ConfigError, match=setting):
        create_app(settings)


# --- GET /api/v1/contact ----------------------------------------------------------------------


def test_the_contact_api_gives_every_detail_while_open(client: FlaskClient) -> None:
    with time_machine.travel(datetime(2026, 11, 25, 15, 0, tzinfo=UTC), tick=False):
        response = client.get("/api/v1/contact")
    assert response.status_code == 200
    body = response.get_json()
    assert {"email", "phone", "fax", "hours", "timezone", "open_now", "next_open"} <= set(body)
    assert body["email"] == "service@canadianinsulin.com"
    assert body["phone"] == "1-844-560-7790"
    assert body["fax"] == "1-866-951-0118"
    assert body["hours"] == "Mon-Fri 09:00-18:00"
    assert body["timezone"] == "America/New_York"
    assert body["open_now"] is True
    assert datetime.fromisoformat(body["next_open"]) == datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def test_the_contact_api_says_closed_and_when_it_opens_on_a_saturday(client: FlaskClient) -> None:
    with time_machine.travel(datetime(2026, 11, 28, 15, 0, tzinfo=UTC), tick=False):
        body = client.get("/api/v1/contact").get_json()
    assert body["open_now"] is False
    assert datetime.fromisoformat(body["next_open"]) == datetime(2026, 11, 30, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "app_settings",
    [
        {
            "CONTACT_HOURS": "Mon-Sat 08:00-20:00",
            "CONTACT_TIMEZONE": "America/Vancouver",
            "CONTACT_PHONE": "604-555-0100",
        }
    ],
    ids=["vancouver"],
)
def test_the_contact_api_follows_the_settings(client: FlaskClient) -> None:
    with time_machine.travel(datetime(2026, 11, 28, 17, 0, tzinfo=UTC), tick=False):  # Saturday 9:00 there
        body = client.get("/api/v1/contact").get_json()
    assert body["hours"] == "Mon-Sat 08:00-20:00"
    assert body["timezone"] == "America/Vancouver"
    assert body["phone"] == "604-555-0100"
    assert body["open_now"] is True
