"""The support console: sign in, find a customer, see the account and its trail, act on it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from service.console.forms import AgentSignInForm, ConfirmActionForm, SignOutForm
from service.console.session import (
    current_agent,
    end_agent_session,
    refresh_agent_session,
    start_agent_session,
)
from service.events.audit import agent_actor
from service.models import ResetMethod
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.errors import NoEmailOnFile, RateLimited
from service.platform.extensions import db
from service.platform.ratelimits import page_per_ip
from service.resets.policy import reset_policy
from service.support import actions
from service.support.agents import sign_in_agent

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
}
DONE_MESSAGES = {
    "reset-link": _l("Sent a reset link to %(address)s."),
    "temporary-password": _l("Sent a temporary password to %(address)s."),
}


def agent_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Send anyone not signed in (or idle too long) to the sign-in page."""

    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if current_agent() is None:
            return redirect(url_for("support.sign_in"))
        return view(*args, **kwargs)

    return wrapped


def actor() -> str:
    agent = current_agent()
    assert agent is not None, "agent_required comes first"
    return agent_actor(agent.username)


@console.route("/login", methods=["GET", "POST"])
@page_per_ip
def sign_in() -> str | tuple[str, int] | Response:
    form = AgentSignInForm()
    status = 200
    if form.validate_on_submit():
        try:
            agent = sign_in_agent(db.session, form.username.data, form.password.data, ip=client_ip(), now=utcnow())
        except RateLimited as error:
            form.password.errors = [error.detail]
            status = 429
        else:
            if agent is None:
                db.session.commit()  # the failed attempt's record
                form.password.errors = [_("The username or password is wrong.")]
                status = 401
            else:
                response = redirect(url_for("support.search"))
                start_agent_session(response, agent)
                db.session.commit()
                return response
    elif form.is_submitted():
        status = 400
    return render_template("support/login.html", form=form), status


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
    events = actions.account_events(db.session, username, per_page=50)
    db.session.commit()
    return render_template(
        "support/account.html", account=overview, events=events.items, actions=ACTIONS,
        sign_out_form=SignOutForm(),
    )


@console.route("/accounts/<username>/<action>", methods=["GET", "POST"])
@agent_required
def confirm_action(username: str, action: str) -> str | tuple[str, int] | Response:
    if action not in ACTIONS:
        abort(404)
    overview = actions.account_overview(db.session, username, actor=actor(), ip=client_ip(), now=utcnow())
    db.session.commit()
    form = ConfirmActionForm()
    if not form.validate_on_submit():
        # GET, or a POST that failed: show what will happen and ask to confirm.
        return render_template(
            "support/confirm.html", account=overview, action=action, label=ACTIONS[action], form=form,
            sign_out_form=SignOutForm(),
        ), (400 if form.is_submitted() else 200)
    try:
        if action == "unlock":
            actions.unlock_account(
                db.session, username, actor=actor(), ip=client_ip(), now=utcnow(),
                note=form.note.data or None, ticket=form.ticket.data or None,
            )
            db.session.commit()
            flash(_("Sign-in is unlocked."))
        else:
            method = ResetMethod.LINK if action == "reset-link" else ResetMethod.TEMPORARY_PASSWORD
            issued = actions.send_reset(
                db.session, username, method, policy=reset_policy(), quota=current_app.config["AGENT_RESETS_PER_HOUR"],
                actor=actor(), ip=client_ip(), now=utcnow(),
                note=form.note.data or None, ticket=form.ticket.data or None,
            )
            db.session.commit()
            flash(str(DONE_MESSAGES[action]) % {"address": issued.sent_to})
    except (NoEmailOnFile, RateLimited) as error:
        db.session.rollback()
        flash(str(error.detail), "error")
    return redirect(url_for("support.account", username=username))
