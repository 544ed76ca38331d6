"""The customer-facing forms; Flask-WTF adds and checks their CSRF token."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from service.platform.forms import TextForm, storable
from service.platform.text import EMAIL_MAX_LENGTH, USERNAME_MAX_LENGTH

FIELD_MAX_LENGTH = 1000
CODE_FIELD_MAX_LENGTH = 64


class ResetRequestForm(TextForm):
    username = StringField(
        _l("Username"),
        validators=[
            DataRequired(message=_l("Enter your username.")),
            Length(max=USERNAME_MAX_LENGTH, message=_l("A username has at most %(maximum)d characters.", maximum=USERNAME_MAX_LENGTH)),
            storable,
        ],
    )


class UsernameReminderForm(TextForm):
    email = StringField(
        _l("Email address"),
        validators=[
            DataRequired(message=_l("Enter your email address.")),
            Length(max=EMAIL_MAX_LENGTH, message=_l("An email address has at most %(maximum)d characters.", maximum=EMAIL_MAX_LENGTH)),
            storable,
        ],
    )


class NewPasswordForm(TextForm):
    new_password = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(message=_l("Enter a new password.")),
            Length(max=FIELD_MAX_LENGTH, message=_l("That password is far too long.")),
            storable,
        ],
    )
    confirm_password = PasswordField(
        _l("New password, again"),
        validators=[
            DataRequired(message=_l("Enter the new password a second time.")),
            EqualTo("new_password", message=_l("The two passwords are not the same.")),
        ],
    )


class ResetCodeForm(TextForm):
    username = StringField(
        _l("Username"),
        validators=[
            DataRequired(message=_l("Enter your username.")),
            Length(max=USERNAME_MAX_LENGTH, message=_l("A username has at most %(maximum)d characters.", maximum=USERNAME_MAX_LENGTH)),
            storable,
        ],
    )
    code = StringField(
        _l("Code from the email"),
        validators=[
            DataRequired(message=_l("Enter the code from the email.")),
            Length(max=CODE_FIELD_MAX_LENGTH, message=_l("That code is far too long.")),
            storable,
        ],
    )


class ConfirmEmailForm(TextForm):
    """Only a CSRF token: the button that confirms a new email address (opening the link does not)."""


class ReportForm(TextForm):
    """Only a CSRF token: the "this wasn't me" button (opening the link does nothing)."""
