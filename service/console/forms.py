"""The console's forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional

from service.accounts.freezing import REASON_MAX_LENGTH
from service.platform.forms import TextForm, one_line, storable
from service.support.actions import NOTE_MAX_LENGTH, TICKET_MAX_LENGTH


class AgentSignInForm(TextForm):
    username = StringField(_l("Username"), validators=[DataRequired(message=_l("Enter your username.")), Length(max=150), storable])
    password = PasswordField(_l("Password"), validators=[DataRequired(message=_l("Enter your password.")), Length(max=1000), storable])


class TotpCodeForm(TextForm):
    """The second step of signing in (or the first code of an enrolment)."""

    code = StringField(
        _l("Code from your authenticator app"),
        validators=[DataRequired(message=_l("Enter the 6-digit code your app shows.")), Length(max=20), storable],
    )


class ConfirmActionForm(TextForm):
    """Every action asks how the caller proved who they are, before anything is done."""

    verified_by = SelectField(
        _l("How did you verify the caller?"),
        validators=[DataRequired(message=_l("Say how you verified the caller before acting."))],
    )
    ticket = StringField(_l("Ticket number (optional)"), validators=[Optional(), Length(max=TICKET_MAX_LENGTH), storable, one_line])
    note = StringField(_l("Note (optional)"), validators=[Optional(), Length(max=NOTE_MAX_LENGTH), storable, one_line])


class FreezeForm(ConfirmActionForm):
    reason = StringField(
        _l("Why freeze it?"),
        validators=[DataRequired(message=_l("Give the reason for freezing.")), Length(max=REASON_MAX_LENGTH), storable, one_line],
    )


class ChangeEmailForm(ConfirmActionForm):
    email = StringField(
        _l("New email address"),
        validators=[
            DataRequired(message=_l("Enter the address the caller gives.")), Length(max=254),
            Email(message=_l("Enter an email address such as name@example.com."), check_deliverability=False),
            storable,
        ],
    )


class SignOutForm(TextForm):
    """Only a CSRF token: signing out is a POST so no link can do it for the agent."""
