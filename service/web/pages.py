"""Reset Your Password, forgotten usernames, the new-password form reached from an emailed link,
confirming a new email address, and login help."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from service.accounts.emailchange import check_email_change, confirm_email_change
from service.accounts.passwords import password_rules
from service.accounts.reminders import request_username_reminder
from service.accounts.reportlinks import ReportOutOfDate, read_report
from service.accounts.reports import report_not_me
from service.contact.hours import contact_details, shop_zone_name
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.database import core_transaction
from service.platform.errors import TokenExpired, TokenInvalid, TokenUsed, WeakPassword
from service.platform.extensions import db
from service.platform.i18n import LANGUAGE_COOKIE, current_language, supported_language
from service.platform.ratelimits import (
    code_per_username,
    page_per_ip,
    reminder_per_address,
    reminder_per_ip,
    reset_request_per_ip,
    reset_request_per_username,
    token_per_ip,
)
from service.platform.text import USERNAME_MAX_LENGTH
from service.resets.codes import check_code
from service.resets.links import check_link, confirm_reset, confirm_reset_by_code
from service.resets.policy import reset_policy
from service.resets.requests import request_reset
from service.web.forms import (
    ConfirmEmailForm,
    NewPasswordForm,
    ReportForm,
    ResetCodeForm,
    ResetRequestForm,
    UsernameReminderForm,
)

pages = Blueprint("pages", __name__)

SESSION_TOKEN_KEY = "reset_token"
SESSION_CODE_KEY = "reset_code"
SESSION_EMAIL_TOKEN_KEY = "email_change_token"
# Set by a successful change (when, in seconds): only that browser sees the done page, for a while
# (long enough to reload it or switch its language).
SESSION_DONE_KEY = "reset_done_at"
DONE_PAGE_MINUTES = 10
PageResult = str | tuple[str, int] | Response


def sign_in_url() -> str | None:
    """The shop's own sign-in page (SIGN_IN_URL), or None: this service's root is the reset box,
    so a "Sign in" link there would only lead back to where the customer started."""
    return str(current_app.config["SIGN_IN_URL"]) or None


@pages.get("/")
@page_per_ip
def index() -> Response:
    return redirect(url_for("pages.reset_request_form"))


@pages.get("/reset-password")
@page_per_ip
def reset_request_form() -> PageResult:
    # `?username=` (from a username reminder) only fills the box in: a GET sends nothing.
    form = ResetRequestForm(username=request.args.get("username", "")[:USERNAME_MAX_LENGTH])
    return render_template("reset_request.html", form=form, method=current_app.config["RESET_METHOD"])


@pages.get("/forgot-username")
@page_per_ip
def username_reminder_form() -> PageResult:
    return render_template("forgot_username.html", form=UsernameReminderForm())


@pages.post("/forgot-username")
@reminder_per_ip
@reminder_per_address
def username_reminder_submit() -> PageResult:
    form = UsernameReminderForm()
    if not form.validate_on_submit():
        return render_template("forgot_username.html", form=form), 400
    request_username_reminder(db.session, form.email.data, ip=client_ip(), now=utcnow(), language=current_language())
    db.session.commit()
    return render_template("username_sent.html")


@pages.post("/reset-password")
@reset_request_per_ip
@reset_request_per_username
def reset_request_submit() -> PageResult:
    form = ResetRequestForm()
    method = current_app.config["RESET_METHOD"]
    if not form.validate_on_submit():
        return render_template("reset_request.html", form=form, method=method), 400
    with core_transaction(db.session) as connection:
        request_reset(
            connection, form.username.data, policy=reset_policy(), ip=client_ip(), now=utcnow(),
            language=current_language(),
        )
    return render_template("reset_sent.html", method=method)


@pages.route("/reset-password/code", methods=["GET", "POST"])
@token_per_ip
@code_per_username
def reset_code_form() -> PageResult:
    """Username and the code from the mail; a right pair leads on to the new-password form."""
    form = ResetCodeForm()
    if not form.validate_on_submit():
        return render_template("reset_code.html", form=form), 400 if form.is_submitted() else 200
    try:
        check_code(db.session, form.username.data, form.code.data, policy=reset_policy(), now=utcnow())
    except (TokenInvalid, TokenExpired, TokenUsed) as error:
        # A wrong code counts (CodeRejected flushed it); nothing else was changed.
        db.session.commit()
        form.code.errors = [str(error.detail)]
        return render_template("reset_code.html", form=form), error.status
    db.session.commit()
    session.pop(SESSION_TOKEN_KEY, None)
    session[SESSION_CODE_KEY] = {"u": form.username.data, "c": form.code.data}
    return redirect(url_for("pages.new_password_form"))


@pages.get("/reset-password/<path:token>")
@token_per_ip
def reset_link(token: str) -> Response:
    # Mail scanners open links too: opening one only parks the token in the session, and the
    # redirect takes it out of the address bar (and out of any Referer) at once.
    session.pop(SESSION_CODE_KEY, None)
    session[SESSION_TOKEN_KEY] = token[:1000]
    return redirect(url_for("pages.new_password_form"))


def _link_problem(error: TokenInvalid | TokenExpired | TokenUsed) -> tuple[str, int]:
    session.pop(SESSION_TOKEN_KEY, None)
    session.pop(SESSION_CODE_KEY, None)
    return render_template("reset_link_problem.html", error=error), error.status


@pages.route("/reset-password/new", methods=["GET", "POST"])
@token_per_ip
def new_password_form() -> PageResult:
    token = session.get(SESSION_TOKEN_KEY)
    by_code = session.get(SESSION_CODE_KEY)
    policy = reset_policy()

    def confirm(new_password: str) -> None:
        if isinstance(by_code, dict):
            confirm_reset_by_code(
                db.session, str(by_code.get("u", "")), str(by_code.get("c", "")), new_password, policy=policy,
                ip=client_ip(), now=utcnow(),
            )
        else:
            confirm_reset(db.session, str(token), new_password, policy=policy, ip=client_ip(), now=utcnow())

    if not token and not isinstance(by_code, dict):
        return _link_problem(TokenInvalid(_("Open the link from your email to choose a new password.")))
    try:
        if isinstance(by_code, dict):
            reset = check_code(
                db.session, str(by_code.get("u", "")), str(by_code.get("c", "")), policy=policy, now=utcnow()
            )
        else:
            reset = check_link(db.session, str(token), policy=policy, now=utcnow())
    except (TokenInvalid, TokenExpired, TokenUsed) as error:
        db.session.commit()  # a code that stopped matching counts like any wrong one
        return _link_problem(error)
    form = NewPasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            confirm(form.new_password.data)
        except WeakPassword as error:
            db.session.rollback()
            form.new_password.errors = [e.message for e in error.errors]
            status = 400
        except (TokenInvalid, TokenExpired, TokenUsed) as error:
            db.session.rollback()
            return _link_problem(error)
        else:
            db.session.commit()
            session.pop(SESSION_TOKEN_KEY, None)
            session.pop(SESSION_CODE_KEY, None)
            session[SESSION_DONE_KEY] = int(utcnow().timestamp())
            return redirect(url_for("pages.reset_done"))
    elif form.is_submitted():
        status = 400
    return render_template(
        "reset_new.html", form=form, rules=password_rules(), username=reset.account.username
    ), status


@pages.get("/reset-password/done")
@page_per_ip
def reset_done() -> PageResult:
    # "Your password has been changed" is news only for the browser that just changed it.
    changed_at = session.get(SESSION_DONE_KEY)
    if not isinstance(changed_at, int) or not 0 <= utcnow().timestamp() - changed_at <= DONE_PAGE_MINUTES * 60:
        session.pop(SESSION_DONE_KEY, None)
        return redirect(url_for("pages.reset_request_form"))
    return render_template("reset_done.html", sign_in_url=sign_in_url())


def is_local_path(target: str) -> bool:
    """Only a plain path on this site may be redirected to, never an open redirect elsewhere.

    Browsers and Werkzeug drop tabs and newlines and read `\\` as `/`, so any of them could
    turn `/\t/evil.example` into `//evil.example`: such characters disqualify a path outright.
    """
    if any(ord(char) < 0x20 or ord(char) == 0x7F or char == "\\" for char in target):
        return False
    return target.startswith("/") and not target.startswith("//")


@pages.get("/language/<code>")
@page_per_ip
def choose_language(code: str) -> Response:
    """Remember a visitor's language and go back to the page they were on."""
    target = request.args.get("next", "")
    if not is_local_path(target):
        target = url_for("pages.reset_request_form")
    response = redirect(target)
    language = supported_language(code)
    if language:
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600, httponly=True, samesite="Lax",
            secure=current_app.config["APP_ENV"] == "production",
        )
    return response


@pages.get("/brand.css")
def brand_css() -> Response:
    """The shop's colour, as a stylesheet, so the CSP never needs inline styles."""
    css = f":root {{ --accent: {current_app.config['PRIMARY_COLOUR']}; }}\n"
    response = Response(css, mimetype="text/css")  # werkzeug's Response, imported above
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@pages.get("/favicon.ico")
def favicon() -> Response:
    """Browsers and crawlers ask for /favicon.ico whatever a page links: send them to the icon."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


@pages.get("/login-help")
@page_per_ip
def login_help() -> PageResult:
    now = utcnow()
    return render_template("login_help.html", contact=contact_details(now), zone_name=shop_zone_name(now), now=now)


@pages.get("/report/<path:token>")
@page_per_ip
def report_form(token: str) -> PageResult:
    """"This wasn't me": only a page with a button, so a mail scanner's visit does nothing."""
    try:
        report = read_report(db.session, token)
    except ReportOutOfDate as error:
        return report_out_of_date(error)
    except TokenInvalid as error:
        return render_template("error.html", title=error.title, detail=error.detail), error.status
    return render_template("report.html", form=ReportForm(), token=token, report=report, done=False)


def report_out_of_date(error: ReportOutOfDate) -> PageResult:
    """A genuine report link that has done its work: say so kindly, and whom to call when."""
    now = utcnow()
    return render_template("report.html", out_of_date=error, done=False, contact=contact_details(now), now=now), error.status


@pages.post("/report/<path:token>")
@token_per_ip
def report_submit(token: str) -> PageResult:
    form = ReportForm()
    if not form.validate_on_submit():
        return render_template("error.html", title=_("This form has expired"), detail=_("Go back, reload the page and try again.")), 400
    now = utcnow()
    try:
        report = read_report(db.session, token)
        report_not_me(db.session, report, ip=client_ip(), now=now)
    except ReportOutOfDate as error:
        db.session.rollback()
        return report_out_of_date(error)
    except TokenInvalid as error:
        db.session.rollback()
        return render_template("error.html", title=error.title, detail=error.detail), error.status
    db.session.commit()
    return render_template("report.html", report=report, done=True, contact=contact_details(now), now=now)


@pages.get("/confirm-email/<path:token>")
@token_per_ip
def email_confirm_link(token: str) -> Response:
    # As with reset links: opening it changes nothing, and the token leaves the address bar.
    session[SESSION_EMAIL_TOKEN_KEY] = token[:1000]
    return redirect(url_for("pages.email_confirm_form"))


@pages.route("/confirm-email", methods=["GET", "POST"])
@token_per_ip
def email_confirm_form() -> PageResult:
    token = session.get(SESSION_EMAIL_TOKEN_KEY) or ""
    now = utcnow()
    try:
        change = check_email_change(db.session, token, now)
    except (TokenInvalid, TokenExpired, TokenUsed) as error:
        session.pop(SESSION_EMAIL_TOKEN_KEY, None)
        return render_template("email_confirm_problem.html", error=error), error.status
    form = ConfirmEmailForm()
    if form.validate_on_submit():
        try:
            account = confirm_email_change(db.session, token, ip=client_ip(), now=now)
        except TokenUsed as error:
            db.session.rollback()
            return render_template("email_confirm_problem.html", error=error), error.status
        db.session.commit()
        session.pop(SESSION_EMAIL_TOKEN_KEY, None)
        return render_template("email_confirmed.html", address=account.email, sign_in_url=sign_in_url())
    return render_template(
        "email_confirm.html", form=form, username=change.account.username, address=change.new_email
    ), (400 if form.is_submitted() else 200)
