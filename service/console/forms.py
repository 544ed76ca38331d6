"""The console's forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from service.platform.forms import storable


class AgentSignInForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(message=_l("Enter your username.")), Length(max=150), storable])
    password = PasswordField(_l("Password"), validators=[DataRequired(message=_l("Enter your password.")), Length(max=1000), storable])


class ConfirmActionForm(FlaskForm):
    ticket = StringField(_l("Ticket number (optional)"), validators=[Optional(), Length(max=100), storable])
    note = StringField(_l("Note (optional)"), validators=[Optional(), Length(max=200), storable])


class SignOutForm(FlaskForm):
    """Only a CSRF token: signing out is a POST so no link can do it for the agent."""
