"""The support console: sign in, find a customer, see the account and its trail, act on it;
for supervisors, the desk overview."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from babel.dates import format_skeleton
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from werkzeug.wrappers import Response

from service.console.chart import Series, stacked_bars
from service.console.forms import (
    AgentSignInForm,
    ChangeEmailForm,
    ConfirmActionForm,
    FreezeForm,
    SignOutForm,
    TotpCodeForm,
)
from service.console.session import (
    current_agent,
    end_agent_session,
    end_second_step,
    refresh_agent_session,
    second_step_agent,
    start_agent_session,
    start_second_step,
)
from service.contact.hours import parse_timezone
from service.events.audit import agent_actor
from service.models import Agent, ResetMethod
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.errors import NoEmailOnFile, RateLimited, ValidationFailed
from service.platform.extensions import db
from service.platform.ratelimits import page_per_ip
from service.resets.policy import reset_policy
from service.support import actions, overview, totp
from service.support.agents import check_agent_password, finish_sign_in
from service.support.verification import method_label, verification_methods

console = Blueprint("support", __name__, url_prefix="/support")
console.after_request(refresh_agent_session)

P = ParamSpec("P")
R = TypeVar("R")

# Page numbers longer than this are no page anyone reached (and int() refuses 4,300+ digits).
PAGE_DIGITS = 6

# The buttons on an account page: what each asks and what it does.
ACTIONS = {
    "reset-link": _l("Send a reset link"),
    "temporary-password": _l("Send a temporary password"),
    "unlock": _l("Unlock sign-in"),
    "freeze": _l("Freeze the account"),
    "unfreeze": _l("Unfreeze the account"),
    "email": _l("Change the email address"),
    "close": _l("Close the account"),
}
DONE_MESSAGES = {
    "reset-link": _l("Sent a reset link to %(address)s."),
    "temporary-password": _l("Sent a temporary password to %(address)s."),
}
# The trail in words: an agent reads it to a caller.
EVENT_LABELS = {
    "account.created": _l("Account created"),
    "account.updated": _l("Profile changed by the website"),
    "account.email_change_requested": _l("New email address sent for confirmation"),
    "account.email_changed": _l("Email address changed"),
    "account.frozen": _l("Account frozen"),
    "account.closed": _l("Account closed"),
    "account.unfrozen": _l("Account unfrozen"),
    "account.unlocked": _l("Sign-in unlocked"),
    "password.changed": _l("Password changed"),
    "reset.requested": _l("Password reset asked for"),
    "reset.issued": _l("Reset sent"),
    "sign_in.throttled": _l("Sign-in locked after too many wrong passwords"),
    "mail.sent": _l("Email delivered to the mail server"),
    "mail.failed": _l("Email could not be delivered"),
    "support.viewed": _l("Account opened in the console"),
}
MAIL_STATES = {
    "queued": _l("queued"),
    "sending": _l("sending"),
    "retrying": _l("retrying"),
    "sent": _l("sent"),
    "failed": _l("failed"),
}


def unavailable_reason(action: str, account: dict[str, Any]) -> str | None:
    """Why an action cannot work on this account now, or None when it can."""
    if action in ("reset-link", "temporary-password"):
        if account["frozen"]:
            return str(_("The account is frozen: unfreeze it first."))
        if not account["email"]:
            return str(_("No email address on file: change the email address first."))
    if action == "unlock" and not account["locked"]:
        return str(_("Sign-in is not locked."))
    if action == "freeze" and account["frozen"]:
        return str(_("The account is already frozen."))
    if action == "unfreeze" and not account["frozen"]:
        return str(_("The account is not frozen."))
    return None


def action_form(action: str) -> ConfirmActionForm:
    """The confirmation form of an action, its verification choices filled in."""
    form_class = {"freeze": FreezeForm, "email": ChangeEmailForm}.get(action, ConfirmActionForm)
    form = form_class()
    form.verified_by.choices = [("", _("Choose one"))] + [
        (code, method_label(code)) for code in verification_methods()
    ]
    return form


def agent_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Send anyone not signed in (or idle too long) to the sign-in page."""

    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if current_agent() is None:
            return redirect(url_for("support.sign_in"))
        return view(*args, **kwargs)

    return wrapped


def supervisor_required(view: Callable[P, R]) -> Callable[P, R | Response | tuple[str, int]]:
    """Send anyone not signed in to the sign-in page; tell an agent who is no supervisor why not."""

    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Response | tuple[str, int]:
        agent = current_agent()
        if agent is None:
            return redirect(url_for("support.sign_in"))
        if not agent.supervisor:
            return render_template("support/supervisors_only.html", sign_out_form=SignOutForm()), 403
        return view(*args, **kwargs)

    return wrapped


@console.context_processor
def console_context() -> dict[str, Any]:
    """Whether the signed-in agent (if any) is a supervisor, for the console's links."""
    agent = g.get("agent")
    return {"is_supervisor": bool(agent is not None and agent.supervisor)}


def actor() -> str:
    agent = current_agent()
    assert agent is not None, "agent_required comes first"
    return agent_actor(agent.username)


@console.route("/login", methods=["GET", "POST"])
@page_per_ip
def sign_in() -> tuple[str, int, dict[str, str]] | Response:
    form = AgentSignInForm()
    status = 200
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        ip, now = client_ip(), utcnow()
        try:
            agent = check_agent_password(db.session, form.username.data, form.password.data, ip=ip, now=now)
        except RateLimited as error:
            form.password.errors = [error.detail]
            status = 429
            headers["Retry-After"] = str(error.retry_after)
        else:
            if agent is None:
                db.session.commit()  # the failed attempt's record
                form.password.errors = [_("The username or password is wrong.")]
                status = 401
            elif totp.second_step_needed(agent):
                # The password alone opens nothing: only the code step starts a session.
                response = redirect(url_for("support.sign_in_code"))
                start_second_step(response, agent)
                db.session.commit()  # a rehashed password
                return response
            else:
                response = redirect(url_for("support.search"))
                finish_sign_in(db.session, agent, ip=ip, now=now)
                start_agent_session(response, agent)
                db.session.commit()
                return response
    elif form.is_submitted():
        status = 400
    return render_template("support/login.html", form=form), status, headers


def _enrolment(agent: Agent) -> dict[str, Any]:
    """What an enrolment page shows: the QR code and the key to type, starting one if needed."""
    if totp.is_enrolled(agent):
        return {}
    if agent.totp_secret_sealed is None:
        totp.start_enrolment(db.session, agent, now=utcnow(), actor=agent_actor(agent.username), ip=client_ip())
        db.session.commit()
    return {
        "qr_svg": Markup(totp.qr_code_svg(agent, title=_("QR code to scan with your authenticator app"))),
        "key": totp.enrolment_key(agent),
    }


def _check_code(agent: Agent, form: TotpCodeForm) -> tuple[int, dict[str, str]]:
    """Check the form's code: 200 when right, else the status (and headers) to answer with, the
    form's error set."""
    try:
        accepted = totp.check_code(db.session, agent, form.code.data or "", ip=client_ip(), now=utcnow())
    except RateLimited as error:
        form.code.errors = [error.detail]
        return 429, {"Retry-After": str(error.retry_after)}
    if not accepted:
        db.session.commit()  # the failure's record
        form.code.errors = [_("That code is wrong or was already used. Enter the code your app shows now.")]
        return 401, {}
    return 200, {}


@console.route("/login/code", methods=["GET", "POST"])
@page_per_ip
def sign_in_code() -> tuple[str, int, dict[str, str]] | Response:
    agent = second_step_agent()
    if agent is None:
        flash(_("Sign in again: the time to enter a code ran out."), "error")
        return redirect(url_for("support.sign_in"))
    form = TotpCodeForm()
    status, headers = 200, dict[str, str]()
    if form.validate_on_submit():
        status, headers = _check_code(agent, form)
        if status == 200:
            response = redirect(url_for("support.search"))
            finish_sign_in(db.session, agent, ip=client_ip(), now=utcnow())
            start_agent_session(response, agent)
            end_second_step(response)
            db.session.commit()
            return response
    elif form.is_submitted():
        status = 400
    return render_template(
        "support/totp.html", form=form, action=url_for("support.sign_in_code"), **_enrolment(agent),
    ), status, headers


@console.route("/totp", methods=["GET", "POST"])
@agent_required
def totp_enrolment() -> str | tuple[str, int, dict[str, str]] | Response:
    agent = current_agent()
    assert agent is not None
    form = TotpCodeForm()
    status, headers = 200, dict[str, str]()
    if totp.is_enrolled(agent):
        return render_template("support/totp.html", enrolled=True, sign_out_form=SignOutForm())
    if form.validate_on_submit():
        status, headers = _check_code(agent, form)
        if status == 200:
            db.session.commit()
            flash(_("Your authenticator app is set up: sign-in now asks for its code."), "success")
            return redirect(url_for("support.search"))
    elif form.is_submitted():
        status = 400
    return render_template(
        "support/totp.html", form=form, action=url_for("support.totp_enrolment"), sign_out_form=SignOutForm(),
        **_enrolment(agent),
    ), status, headers


@console.post("/logout")
def sign_out() -> Response:
    if not SignOutForm().validate_on_submit():
        abort(400)
    response = redirect(url_for("support.sign_in"))
    end_agent_session(response)
    db.session.commit()
    return response


@console.get("")
@agent_required
def search() -> str | tuple[str, int]:
    query = request.args.get("q", "").strip()
    page = request.args.get("page", "1")
    found = None
    if query:
        found = actions.search_accounts(
            db.session, query, actor=actor(), ip=client_ip(), now=utcnow(),
            page=int(page) if page.isascii() and page.isdigit() and len(page) <= PAGE_DIGITS else 1,
        )
    db.session.commit()
    return render_template("support/search.html", query=query, found=found, sign_out_form=SignOutForm())


@console.get("/accounts/<username>")
@agent_required
def account(username: str) -> str:
    overview = actions.account_overview(db.session, username, actor=actor(), ip=client_ip(), now=utcnow())
    trail = actions.account_events(db.session, username, per_page=50, kind="trail")
    views = actions.account_events(db.session, username, per_page=10, kind="views")
    db.session.commit()
    return render_template(
        "support/account.html", account=overview, events=trail.items, views=views.items,
        actions={action: (label, unavailable_reason(action, overview)) for action, label in ACTIONS.items()},
        event_labels=EVENT_LABELS, mail_states=MAIL_STATES, method_label=method_label,
        sign_out_form=SignOutForm(),
    )


@console.route("/accounts/<username>/<action>", methods=["GET", "POST"])
@agent_required
def confirm_action(username: str, action: str) -> str | tuple[str, int] | Response:
    if action not in ACTIONS:
        abort(404)
    overview = actions.account_overview(db.session, username, actor=actor(), ip=client_ip(), now=utcnow())
    db.session.commit()
    reason = unavailable_reason(action, overview)
    if reason is not None:
        flash(reason, "error")
        return redirect(url_for("support.account", username=username))
    form = action_form(action)
    if not form.validate_on_submit():
        # GET, or a POST that failed: show what will happen and ask to confirm.
        return render_template(
            "support/confirm.html", account=overview, action=action, label=ACTIONS[action], form=form,
            sign_out_form=SignOutForm(),
        ), (400 if form.is_submitted() else 200)
    try:
        # The console always asks how the caller was verified.
        agent_action = actions.AgentAction.checked(
            actor=actor(), ip=client_ip(), now=utcnow(), note=form.note.data or None,
            ticket=form.ticket.data or None, verified_by=form.verified_by.data, require_verification=True,
        )
        if action == "unlock":
            actions.unlock_account(db.session, username, agent_action)
            message = _("Sign-in is unlocked.")
        elif action == "freeze":
            assert isinstance(form, FreezeForm)
            actions.freeze(db.session, username, agent_action, reason=form.reason.data or "")
            message = _("The account is frozen: no sign-in and no reset mail until it is unfrozen.")
        elif action == "unfreeze":
            actions.unfreeze(db.session, username, agent_action)
            message = _("The account is unfrozen.")
        elif action == "close":
            actions.close(db.session, username, agent_action)
            db.session.commit()
            # The username no longer names the account: back to the search, not to its page.
            flash(_("The account is closed: its personal data is erased and a notice went to its address."), "success")
            return redirect(url_for("support.search"))
        elif action == "email":
            assert isinstance(form, ChangeEmailForm)
            started = actions.change_email(db.session, username, form.email.data or "", agent_action)
            message = _(
                "Sent a confirmation link to %(address)s. The address becomes the account's email once the customer follows it.",
                address=started.sent_to,
            )
        else:
            method = ResetMethod.LINK if action == "reset-link" else ResetMethod.TEMPORARY_PASSWORD
            issued = actions.send_reset(
                db.session, username, method, agent_action,
                policy=reset_policy(), quota=current_app.config["AGENT_RESETS_PER_HOUR"],
            )
            message = str(DONE_MESSAGES[action]) % {"address": issued.sent_to}
        db.session.commit()
        flash(message, "success")
    except (NoEmailOnFile, RateLimited, ValidationFailed) as error:
        db.session.rollback()
        flash(str(error.detail), "error")
    return redirect(url_for("support.account", username=username))


# --- the desk overview (supervisors) ----------------------------------------------------------

OVERVIEW_PERIODS = (7, 30, 90)
ROUTE_LABELS = {
    "self_link": _l("Link"),
    "self_code": _l("Code"),
    "self_temporary_password": _l("Temporary password"),
    "agent": _l("Sent by support"),
}
# Colours of the routes in the chart: each at least 3:1 against white (WCAG 1.4.11), and told
# apart by people who see red and green alike (after Okabe and Ito's palette).
ROUTE_COLOURS = {
    "self_link": "#0b5394",
    "self_code": "#c24e00",
    "self_temporary_password": "#00795b",
    "agent": "#a6437e",
}
ACTION_LABELS = {
    "resets": _l("Resets sent"),
    "unlocks": _l("Unlocks"),
    "freezes": _l("Freezes"),
    "unfreezes": _l("Unfreezes"),
    "email_changes": _l("Email changes"),
    "closures": _l("Closures"),
}


def _looked_at(shown_as: str, table: str | None = None) -> overview.DeskOverview:
    """The overview for the `days` asked for, its look recorded under the agent's name."""
    found = overview.look_at_overview(
        db.session, days_asked=request.args.get("days"), zone=parse_timezone(current_app.config["CONTACT_TIMEZONE"]),
        shown_as=shown_as, table=table, actor=actor(), ip=client_ip(), now=utcnow(),
    )
    db.session.commit()
    return found


def _short_date(day: date) -> str:
    return format_skeleton("MMMd", day, locale=get_locale())


def _long_date(day: date) -> str:
    return format_skeleton("yMMMEd", day, locale=get_locale())


def _route_counts(counts: Sequence[int]) -> dict[str, int]:
    return dict(zip(("link", "code", "temporary", "agent"), counts, strict=True))


def resets_chart(found: overview.DeskOverview) -> Markup:
    """The stacked bars of resets per day by route, with their words."""
    totals = found.totals
    # Counts follow a colon, so the sentence needs no plural forms.
    description = _(
        "From %(first)s to %(last)s, resets done: %(num)d (link %(link)d, code %(code)d, "
        "temporary password %(temporary)d, sent by support %(agent)d).",
        first=_long_date(found.first_day), last=_long_date(found.last_day), num=totals.resets_total,
        **_route_counts([totals.resets[route] for route in overview.ROUTES]),
    )
    if totals.resets_total:
        busiest = max(found.days, key=lambda day: day.resets_total)
        assert busiest.date is not None
        description += " " + _(
            "Busiest day: %(date)s, with %(num)d.", date=_long_date(busiest.date), num=busiest.resets_total
        )
    return stacked_bars(
        [day.date for day in found.days if day.date is not None],
        [Series(route, str(ROUTE_LABELS[route]), ROUTE_COLOURS[route]) for route in overview.ROUTES],
        [[day.resets[route] for route in overview.ROUTES] for day in found.days],
        chart_id="resets-chart",
        title=_("Resets per day, by route"),
        description=description,
        x_label=_("Day (%(zone)s)", zone=found.timezone),
        y_label=_("Resets done"),
        empty_text=_("No reset was done in these days."),
        date_label=_short_date,
        bar_title=lambda day, counts: _(
            "%(date)s: link %(link)d, code %(code)d, temporary password %(temporary)d, sent by support %(agent)d",
            date=_long_date(day), **_route_counts(counts),
        ),
    )


def actor_label(agent: overview.AgentActions) -> str:
    """An agent by username; an API key as such."""
    if agent.agent_username is not None:
        return agent.agent_username
    return str(_("API key %(name)s", name=agent.actor.removeprefix("key:")))


@console.get("/overview")
@supervisor_required
def desk_overview() -> str:
    found = _looked_at("page")
    return render_template(
        "support/overview.html", overview=found, days=len(found.days), periods=OVERVIEW_PERIODS,
        chart=resets_chart(found), routes=overview.ROUTES, route_labels=ROUTE_LABELS,
        action_kinds=overview.ACTION_KINDS, action_labels=ACTION_LABELS, actor_label=actor_label,
        long_date=_long_date, sign_out_form=SignOutForm(),
    )


@console.get("/overview.csv")
@supervisor_required
def desk_overview_csv() -> Response:
    table = overview.parse_csv_table(request.args.get("table"))
    found = _looked_at("csv", table)
    body = overview.days_csv(found) if table == "days" else overview.agents_csv(found)
    return Response(
        body, mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{overview.csv_filename(found, table)}"'},
    )
