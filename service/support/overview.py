"""The desk overview for supervisors: per day of the shop's time zone, the resets done by each
route, the mail sent and failed, sign-in throttles and freezes; and the actions of each agent.

Resets come from their own table (`password_resets.used_at` and `used_via`): one row per reset,
however many events its use recorded. Mail, throttles, freezes and agents' actions are events,
and the overview is a report of events: it counts audit rows of a few types in the window, with
one grouped query each, over the (type, at) index. A row's day is found in SQL by comparing its
time with the window's local midnights (in UTC), so every zone is right, daylight saving and
half-hour offsets included, on SQLite and PostgreSQL alike. Nothing here commits.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from sqlalchemy import Case, ColumnElement, Integer, case, func, literal, or_, select

from service.events import audit
from service.models import AccountStatus, Agent, AuditEvent, PasswordReset, ResetMethod
from service.platform.database import DbSession
from service.platform.errors import FieldError, ValidationFailed

DEFAULT_DAYS = 30
MAX_DAYS = 90

# How a reset was done: by the customer with the link, with the code beside it, with a
# temporary password; or any way at all, once support (an agent, an agent key, the shell) sent it.
ROUTES = ("self_link", "self_code", "self_temporary_password", "agent")

# The events counted per day, and what each is called in the overview.
DAY_EVENTS = {
    "mail.sent": "mail_sent",
    "mail.failed": "mail_failed",
    "sign_in.throttled": "throttles",
    "account.frozen": "freezes",
}

# What counts as an agent's action on an account: one event per action (a reset records
# `reset.requested` too, which is not counted again), and what each is called.
ACTION_EVENTS = {
    "reset.issued": "resets",
    "account.unlocked": "unlocks",
    "account.frozen": "freezes",
    "account.unfrozen": "unfreezes",
    "account.email_change_requested": "email_changes",
    "account.closed": "closures",
}
ACTION_KINDS = tuple(ACTION_EVENTS.values())
# Support's actors: agents in the console and agent (or admin) keys.
SUPPORT_ACTOR_PREFIXES = ("agent:", "key:")

CSV_TABLES = ("days", "agents")
DAYS_CSV_COLUMNS = (
    "date", *(f"resets_{route}" for route in ROUTES), "mail_sent", "mail_failed", "throttles", "freezes",
)
AGENTS_CSV_COLUMNS = ("actor", "actions", *ACTION_KINDS)


@dataclass(frozen=True)
class DayCounts:
    """What the desk saw in one day (or, without a date, in the whole window)."""

    date: date | None
    resets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROUTES, 0))
    mail_sent: int = 0
    mail_failed: int = 0
    throttles: int = 0
    freezes: int = 0

    @property
    def resets_total(self) -> int:
        return sum(self.resets.values())


@dataclass(frozen=True)
class AgentActions:
    """How many actions of each kind one support actor took in the window."""

    actor: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def agent_username(self) -> str | None:
        """The agent's username for a console agent, None for an API key."""
        prefix = "agent:"
        return self.actor[len(prefix):] if self.actor.startswith(prefix) else None


@dataclass(frozen=True)
class DeskOverview:
    """The window's days, oldest first, its totals, and each support actor's actions."""

    timezone: str
    days: list[DayCounts]
    totals: DayCounts
    agents: list[AgentActions]

    @property
    def first_day(self) -> date:
        first = self.days[0].date
        assert first is not None
        return first

    @property
    def last_day(self) -> date:
        last = self.days[-1].date
        assert last is not None
        return last


def parse_days(raw: str | None) -> int:
    """The `days` a caller asked for: a whole number from 1 to MAX_DAYS; DEFAULT_DAYS when absent."""
    if raw is None:
        return DEFAULT_DAYS
    # Digits only, and few of them, before int(): no sign, space, other script's digits or huge number.
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_DAYS)) and 1 <= int(raw) <= MAX_DAYS:
        return int(raw)
    message = _("days must be a whole number from 1 to %(most)d.", most=MAX_DAYS)
    raise ValidationFailed(message, errors=[FieldError("days", message)])


def parse_csv_table(raw: str | None) -> str:
    """Which CSV a caller asked for: `days` (the default) or `agents`."""
    if raw is None:
        return CSV_TABLES[0]
    if raw in CSV_TABLES:
        return raw
    message = _("table must be days or agents.")
    raise ValidationFailed(message, errors=[FieldError("table", message)])


def day_starts(days: int, zone: ZoneInfo, now: datetime) -> list[tuple[date, datetime]]:
    """The window's dates, ending with today in `zone`, each with its local midnight in UTC;
    one more at the end: the midnight that closes the window."""
    today = now.astimezone(zone).date()
    dates = [today - timedelta(days=days - 1 - index) for index in range(days + 1)]
    return [(day, datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)) for day in dates]


def _day_index(column: Any, ends: list[datetime], first: int = 0) -> ColumnElement[int]:
    """Which day of the window a time within it falls on, as SQL: `ends` are the ends of days
    `first`, `first + 1`, ... Nested halves, so a row meets about log2(days) comparisons, not days."""
    if len(ends) == 1:
        return literal(first, Integer)
    middle = len(ends) // 2
    return case(
        (column < ends[middle - 1], _day_index(column, ends[:middle], first)),
        else_=_day_index(column, ends[middle:], first + middle),
    )


def _in_window(column: Any, starts: list[datetime]) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = (column >= starts[0]) & (column < starts[-1])
    return condition


def _reset_route() -> Case[Any]:
    return case(
        (PasswordReset.requested_by != audit.SELF, "agent"),
        (PasswordReset.method == ResetMethod.TEMPORARY_PASSWORD, "self_temporary_password"),
        (PasswordReset.used_via == "reset_code", "self_code"),
        else_="self_link",
    )


def _resets_by_day(session: DbSession, starts: list[datetime]) -> list[tuple[int, str, int]]:
    """(day, route, count) of the resets used in the window."""
    # Grouped outside the subquery: the day's CASE carries parameters, and PostgreSQL would
    # not see two renderings of it (SELECT and GROUP BY) as the same expression.
    used = (
        select(_day_index(PasswordReset.used_at, starts[1:]).label("day"), _reset_route().label("route"))
        .where(_in_window(PasswordReset.used_at, starts))
        .subquery()
    )
    rows = session.execute(select(used.c.day, used.c.route, func.count()).group_by(used.c.day, used.c.route))
    return [(day, route, number) for day, route, number in rows]


def _events_by_day(session: DbSession, starts: list[datetime]) -> list[tuple[int, str, int]]:
    """(day, event type, count) of the day events in the window."""
    happened = (
        select(_day_index(AuditEvent.at, starts[1:]).label("day"), AuditEvent.type.label("type"))
        .where(AuditEvent.type.in_(DAY_EVENTS), _in_window(AuditEvent.at, starts))
        .subquery()
    )
    rows = session.execute(select(happened.c.day, happened.c.type, func.count()).group_by(happened.c.day, happened.c.type))
    return [(day, event_type, number) for day, event_type, number in rows]


def _actions_by_actor(session: DbSession, starts: list[datetime]) -> list[tuple[str, str, int]]:
    """(actor, event type, count) of support's actions in the window."""
    rows = session.execute(
        select(AuditEvent.actor, AuditEvent.type, func.count())
        .where(
            AuditEvent.type.in_(ACTION_EVENTS),
            _in_window(AuditEvent.at, starts),
            or_(*(AuditEvent.actor.startswith(prefix, autoescape=True) for prefix in SUPPORT_ACTOR_PREFIXES)),
        )
        .group_by(AuditEvent.actor, AuditEvent.type)
    )
    return [(actor, event_type, number) for actor, event_type, number in rows]


def _active_agent_actors(session: DbSession) -> list[str]:
    usernames = session.scalars(select(Agent.username).where(Agent.status == AccountStatus.ACTIVE))
    return [audit.agent_actor(username) for username in usernames]


def desk_overview(session: DbSession, *, days: int, zone: ZoneInfo, now: datetime) -> DeskOverview:
    """The overview of the `days` days ending today in `zone`; reads only (the door records the look)."""
    window = day_starts(days, zone, now)
    starts = [start for _day, start in window]
    counts: list[dict[str, Any]] = [
        {"resets": dict.fromkeys(ROUTES, 0), **dict.fromkeys(DAY_EVENTS.values(), 0)} for _ in range(days)
    ]
    for index, route, number in _resets_by_day(session, starts):
        counts[index]["resets"][route] += number
    for index, event_type, number in _events_by_day(session, starts):
        counts[index][DAY_EVENTS[event_type]] += number
    day_counts = [DayCounts(date=day, **count) for (day, _start), count in zip(window[:-1], counts, strict=True)]

    actions: dict[str, dict[str, int]] = {actor: dict.fromkeys(ACTION_KINDS, 0) for actor in _active_agent_actors(session)}
    for actor, event_type, number in _actions_by_actor(session, starts):
        actions.setdefault(actor, dict.fromkeys(ACTION_KINDS, 0))[ACTION_EVENTS[event_type]] += number
    agents = sorted(
        (AgentActions(actor=actor, counts=kinds) for actor, kinds in actions.items()),
        key=lambda agent: (-agent.total, agent.actor.casefold()),
    )
    return DeskOverview(timezone=zone.key, days=day_counts, totals=_totals(day_counts), agents=agents)


def _totals(days: Iterable[DayCounts]) -> DayCounts:
    resets = dict.fromkeys(ROUTES, 0)
    sums = dict.fromkeys(DAY_EVENTS.values(), 0)
    for day in days:
        for route in ROUTES:
            resets[route] += day.resets[route]
        for name in sums:
            sums[name] += getattr(day, name)
    return DayCounts(date=None, resets=resets, **sums)


def _day_json(day: DayCounts) -> dict[str, Any]:
    return {
        "resets": dict(day.resets),
        "mail": {"sent": day.mail_sent, "failed": day.mail_failed},
        "throttles": day.throttles,
        "freezes": day.freezes,
    }


def overview_json(overview: DeskOverview) -> dict[str, Any]:
    """The overview as the API answers it."""
    return {
        "timezone": overview.timezone,
        "from": overview.first_day.isoformat(),
        "to": overview.last_day.isoformat(),
        "days": [{"date": day.date.isoformat() if day.date else None, **_day_json(day)} for day in overview.days],
        "totals": _day_json(overview.totals),
        "agents": [{"actor": agent.actor, "actions": agent.total, **agent.counts} for agent in overview.agents],
    }


def _csv(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    # Every cell is a date, a number or an actor (`agent:...`, `key:...`): none starts with a
    # character a spreadsheet would read as a formula.
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def days_csv(overview: DeskOverview) -> str:
    """One row a day, oldest first, under DAYS_CSV_COLUMNS."""
    return _csv(
        DAYS_CSV_COLUMNS,
        (
            [day.date.isoformat() if day.date else "", *(day.resets[route] for route in ROUTES),
             day.mail_sent, day.mail_failed, day.throttles, day.freezes]
            for day in overview.days
        ),
    )


def agents_csv(overview: DeskOverview) -> str:
    """One row per support actor, busiest first, under AGENTS_CSV_COLUMNS."""
    return _csv(
        AGENTS_CSV_COLUMNS,
        ([agent.actor, agent.total, *(agent.counts[kind] for kind in ACTION_KINDS)] for agent in overview.agents),
    )


def csv_filename(overview: DeskOverview, table: str) -> str:
    """The name a downloaded CSV is saved under."""
    return f"desk-overview-{table}-{overview.first_day.isoformat()}-to-{overview.last_day.isoformat()}.csv"


def record_overview_viewed(
    session: DbSession,
    *,
    days: int,
    shown_as: str,
    actor: str,
    ip: str | None,
    now: datetime,
    table: str | None = None,
) -> None:
    """Record that someone looked at the overview (a page, JSON or a CSV); the caller commits."""
    details: Mapping[str, Any] = {"days": days, "shown_as": shown_as, **({"table": table} if table else {})}
    audit.record_event(session, "support.overview_viewed", actor=actor, ip=ip, now=now, details=dict(details))


def look_at_overview(
    session: DbSession,
    *,
    days_asked: str | None,
    zone: ZoneInfo,
    shown_as: str,
    actor: str,
    ip: str | None,
    now: datetime,
    table: str | None = None,
) -> DeskOverview:
    """The overview for the `days` asked for (ValidationFailed for a bad value), its look
    recorded under `actor`; flushes, the caller commits."""
    days = parse_days(days_asked)
    found = desk_overview(session, days=days, zone=zone, now=now)
    record_overview_viewed(session, days=days, shown_as=shown_as, table=table, actor=actor, ip=ip, now=now)
    return found
