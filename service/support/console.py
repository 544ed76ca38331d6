"""The support console: sign in, find a customer, see the account and its trail, act on it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from .. import support_actions
from ..agents import sign_in_agent
from ..audit import agent_actor
from ..clock import utcnow
from ..dispatcher import wake_after_response
from ..errors import InvalidCredentials, NoEmailOnFile, RateLimited
from ..extensions import db
from ..ratelimits import page_per_ip
from ..requestkeys import client_ip
from .forms import AgentSignInForm, ConfirmActionForm, SignOutForm
from .session import current_agent, end_agent_session, refresh_agent_session, start_agent_session

console = Blueprint("support", __name__, url_prefix="/support")
console.after_request(refresh_agent_session)

P = ParamSpec("P")
R = TypeVar("R")

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
    return agent_actor(current_agent().username)


@console.route("/login", methods=["GET", "POST"])
@page_per_ip
def sign_in() -> str | tuple[str, int] | Response:
    form = AgentSignInForm()
    status = 200
    if form.validate_on_submit():
        try:
            agent = sign_in_agent(db.session, form.username.data, form.password.data, ip=client_ip())
        except InvalidCredentials as error:
            form.password.errors = [error.detail]
            status = 401
        except RateLimited as error:
            form.password.errors = [error.detail]
            status = 429
        else:
            response = redirect(url_for("support.search"))
            start_agent_session(response, agent)
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
    return response


@console.get("")
@agent_required
def search() -> str | tuple[str, int]:
    query = request.args.get("q", "").strip()
    page = request.args.get("page", "1")
    found = None
    if query:
        found = support_actions.search_accounts(
            db.session, query, actor=actor(), ip=client_ip(), page=int(page) if page.isascii() and page.isdigit() else 1
        )
    return render_template("support/search.html", query=query, found=found, sign_out_form=SignOutForm())


@console.get("/accounts/<username>")
@agent_required
def account(username: str) -> str:
    overview = support_actions.account_overview(db.session, username, actor=actor(), ip=client_ip(), now=utcnow())
    events = support_actions.account_events(db.session, username, per_page=50)
    return render_template(
        "support/account.html", account=overview, events=events.items, actions=ACTIONS,
        sign_out_form=SignOutForm(),
    )


@console.route("/accounts/<username>/<action>", methods=["GET", "POST"])
@agent_required
def confirm_action(username: str, action: str) -> str | tuple[str, int] | Response:
    if action not in ACTIONS:
        abort(404)
    overview = support_actions.account_overview(db.session, username, actor=actor(), ip=client_ip(), now=utcnow())
    form = ConfirmActionForm()
    if not form.validate_on_submit():
        # GET, or a POST that failed: show what will happen and ask to confirm.
        return render_template(
            "support/confirm.html", account=overview, action=action, label=ACTIONS[action], form=form,
            sign_out_form=SignOutForm(),
        ), (400 if form.is_submitted() else 200)
    try:
        if action == "unlock":
            support_actions.unlock_account(
                db.session, username, actor=actor(), ip=client_ip(),
                note=form.note.data or None, ticket=form.ticket.data or None,
            )
            flash(_("Sign-in is unlocked."))
        else:
            method = "link" if action == "reset-link" else "temporary_password"
            issued = support_actions.send_reset(
                db.session, username, method, actor=actor(), ip=client_ip(), now=utcnow(),
                note=form.note.data or None, ticket=form.ticket.data or None,
            )
            wake_after_response()
            flash(str(DONE_MESSAGES[action]) % {"address": issued.sent_to})
    except (NoEmailOnFile, RateLimited) as error:
        flash(error.detail, "error")
    return redirect(url_for("support.account", username=username))
