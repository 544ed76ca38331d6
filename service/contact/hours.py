"""Customer-service details, and whether the phones are answered now."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_time, get_day_names, get_timezone_location, get_timezone_name
from flask_babel import get_locale
from flask_babel import gettext as _

from service.platform.config import ConfigError, settings

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# The catalogs' French is Canada's ("courriel", "service à la clientèle"); CLDR's plain `fr`
# names North American zones as France does ("heure de l'Est nord-américain").
ZONE_NAME_LOCALES = {"fr": "fr_CA"}
SEGMENT = re.compile(
    r"^(?P<first>[a-z]{3})(?:-(?P<last>[a-z]{3}))?\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$"
)


@dataclass(frozen=True)
class OpeningPeriod:
    """Open from `start` to `end` on each weekday in `weekdays` (0 is Monday)."""

    weekdays: frozenset[int]
    start: time
    end: time


def _clock_time(text: str, setting: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours == 24 and minutes == 0:
        return time.max
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ConfigError(f"{setting}: {text!r} is not a time of day.")
    return time(hours, minutes)


def parse_hours(hours: str) -> list[OpeningPeriod]:
    """Read `Mon-Fri 09:00-18:00; Sat 10:00-14:00` (segments split by `;` or `,`)."""
    periods = []
    for raw in re.split(r"[;,]", hours):
        segment = " ".join(raw.split()).lower()
        if not segment:
            continue
        match = SEGMENT.match(segment)
        if not match or match["first"] not in DAYS or (match["last"] and match["last"] not in DAYS):
            raise ConfigError(
                f"CONTACT_HOURS: {raw.strip()!r} is not like 'Mon-Fri 09:00-18:00'."
            )
        first = DAYS.index(match["first"])
        last = DAYS.index(match["last"] or match["first"])
        weekdays = frozenset((first + offset) % 7 for offset in range((last - first) % 7 + 1))
        start = _clock_time(match["start"], "CONTACT_HOURS")
        end = _clock_time(match["end"], "CONTACT_HOURS")
        if end <= start:
            raise ConfigError(f"CONTACT_HOURS: {raw.strip()!r} closes before it opens.")
        periods.append(OpeningPeriod(weekdays, start, end))
    if not periods:
        raise ConfigError("CONTACT_HOURS is empty: set it like 'Mon-Fri 09:00-18:00'.")
    return periods


def parse_timezone(name: str) -> ZoneInfo:
    """The zone hours are given in; a ConfigError names an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"CONTACT_TIMEZONE: {name!r} is not a known time zone, such as America/Toronto.") from None


@dataclass(frozen=True)
class OpeningState:
    """Whether service is open at a moment, until when, and when it next opens."""

    open_now: bool
    closes_at: datetime | None
    next_open: datetime | None


def opening_state(periods: list[OpeningPeriod], zone: ZoneInfo, now: datetime) -> OpeningState:
    """Open or closed at `now`, computed in the service's own time zone."""
    local = now.astimezone(zone)
    open_now, closes_at, next_open = False, None, None
    # Two weeks ahead is enough to find the next opening of any weekly schedule.
    for day_offset in range(15):
        day = (local + timedelta(days=day_offset)).date()
        for period in sorted(periods, key=lambda p: p.start):
            if day.weekday() not in period.weekdays:
                continue
            opens = datetime.combine(day, period.start, zone)
            closes = datetime.combine(day, period.end, zone)
            if opens <= local < closes and not open_now:
                open_now, closes_at = True, closes
            elif opens > local and next_open is None:
                next_open = opens
        # Periods were visited in time order, so the first later opening is the next one.
        if next_open is not None:
            break
    return OpeningState(open_now, closes_at, next_open)


def clock_text(value: time | datetime) -> str:
    """A time of day in the current language: `9:00 AM`, `09:00`."""
    if value == time.max:
        return str(_("midnight"))
    # CLDR puts narrow no-break spaces in times; plain spaces read the same and match everywhere.
    return format_time(value, "short", locale=get_locale()).replace("\u202f", " ").replace("\xa0", " ")


def day_name(weekday: int) -> str:
    """The weekday's name in the current language (0 is Monday)."""
    return str(get_day_names("wide", locale=get_locale())[weekday])


def zone_name(zone: ZoneInfo, moment: datetime) -> str:
    """A time zone as customers say it, in the current language: `Eastern Time`, `heure de l’Est`.

    The generic name holds all year; a zone CLDR has none for (UTC, India) gets the name
    of its time at `moment` rather than CLDR's stand-in ("Unknown Region (UTC) Time").
    """
    language = str(get_locale() or "en")
    locale = ZONE_NAME_LOCALES.get(language, language)
    generic = get_timezone_name(zone, width="long", zone_variant="generic", locale=locale)
    if generic != get_timezone_location(zone, locale=locale):
        return str(generic)
    return str(get_timezone_name(moment.astimezone(zone), width="long", locale=locale))


def shop_zone_name(now: datetime) -> str:
    """The name of the zone customer-service hours are given in (CONTACT_TIMEZONE)."""
    return zone_name(parse_timezone(settings()["CONTACT_TIMEZONE"]), now)


def describe_hours(periods: list[OpeningPeriod]) -> list[str]:
    """Hours as people read them: `Monday to Friday, 9:00 AM to 6:00 PM`."""
    lines = []
    for period in periods:
        days = sorted(period.weekdays)
        # A range across the weekend (Fri-Mon) starts on the one day whose day before is not in it.
        first = next((day for day in days if (day - 1) % 7 not in period.weekdays), days[0])
        last = (first + len(days) - 1) % 7
        if len(days) == 1:
            span = day_name(first)
        else:
            span = _("%(first)s to %(last)s", first=day_name(first), last=day_name(last))
        lines.append(
            _("%(days)s, %(opens)s to %(closes)s", days=span, opens=clock_text(period.start), closes=clock_text(period.end))
        )
    return lines


def check_contact_settings(config: dict[str, Any]) -> None:
    """Refuse to start with hours or a time zone that cannot be read."""
    parse_hours(config["CONTACT_HOURS"])
    parse_timezone(config["CONTACT_TIMEZONE"])


def contact_details(now: datetime) -> dict[str, Any]:
    """What the help page, the API and every email say about customer service."""
    config = settings()
    periods = parse_hours(config["CONTACT_HOURS"])
    zone = parse_timezone(config["CONTACT_TIMEZONE"])
    state = opening_state(periods, zone, now)
    return {
        "email": config["CONTACT_EMAIL"],
        "phone": config["CONTACT_PHONE"],
        "fax": config["CONTACT_FAX"],
        "hours": config["CONTACT_HOURS"],
        "hours_text": describe_hours(periods),
        "timezone": config["CONTACT_TIMEZONE"],
        "timezone_abbreviation": now.astimezone(zone).tzname(),
        "open_now": state.open_now,
        "closes_at": state.closes_at.isoformat() if state.closes_at else None,
        "next_open": state.next_open.isoformat() if state.next_open else None,
    }
