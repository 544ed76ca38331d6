"""Template filters shared by pages and emails."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask
from flask_babel import gettext as _

from service.contact.hours import clock_text, day_name


def tel_href(phone: str) -> str:
    """`1-844-560-7790` becomes `+18445607790`, what a `tel:` link wants."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 10:  # a North American number written without its country code
        digits = "1" + digits
    return "+" + digits


def opening_time(iso_time: str, zone_name: str) -> str:
    """`2026-11-25T09:00:00-05:00` becomes `Wednesday at 9:00 AM EST` (in the page's language)."""
    moment = datetime.fromisoformat(iso_time).astimezone(ZoneInfo(zone_name))
    return str(_(
        "%(day)s at %(time)s %(zone)s",
        day=day_name(moment.weekday()),
        time=clock_text(moment.time()),
        zone=moment.tzname(),
    ))


def register_template_filters(app: Flask) -> None:
    app.add_template_filter(tel_href)
    app.add_template_filter(opening_time)
