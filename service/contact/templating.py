"""Template filters shared by pages and emails."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask import Flask
from flask_babel import get_locale
from flask_babel import gettext as _

from service.contact.hours import clock_text, day_name, zone_name


def tel_href(phone: str) -> str:
    """`1-844-560-7790` becomes `+18445607790`, what a `tel:` link wants."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 10:  # a North American number written without its country code
        digits = "1" + digits
    return "+" + digits


def opening_time(iso_time: str, timezone: str, now: datetime | None = None) -> str:
    """`2026-11-25T09:00:00-05:00` becomes `Wednesday at 9:00 AM Eastern Time`, or in French
    `mercredi à 09:00, heure de l’Est`: the zone as people say it, never `America/New_York`.
    Given `now`, a moment on the same day in that zone is `today at ...`, and on the next day
    `tomorrow at ...`: "Monday" read on a Monday morning leaves a caller wondering which one."""
    zone = ZoneInfo(timezone)
    moment = datetime.fromisoformat(iso_time).astimezone(zone)
    time_text, zone_text = clock_text(moment.time()), zone_name(zone, moment)
    days_ahead = (moment.date() - now.astimezone(zone).date()).days if now is not None else None
    if days_ahead == 0:
        return str(_("today at %(time)s %(zone)s", time=time_text, zone=zone_text))
    if days_ahead == 1:
        return str(_("tomorrow at %(time)s %(zone)s", time=time_text, zone=zone_text))
    return str(_("%(day)s at %(time)s %(zone)s", day=day_name(moment.weekday()), time=time_text, zone=zone_text))


def local_moment(moment: datetime, zone_name: str) -> str:
    """A UTC moment in the shop's zone and the current language: `Tuesday, December 1, 2026 at 9:14 AM EST`."""
    local = moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(ZoneInfo(zone_name))
    return str(_(
        "%(day)s, %(date)s at %(time)s %(zone)s",
        day=day_name(local.weekday()),
        date=format_date(local.date(), "long", locale=get_locale()),
        time=clock_text(local.time()),
        zone=local.tzname(),
    ))


def register_template_filters(app: Flask) -> None:
    app.add_template_filter(tel_href)
    app.add_template_filter(opening_time)
    app.add_template_filter(local_moment)
