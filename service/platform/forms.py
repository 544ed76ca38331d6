"""What every HTML form shares: a base that reads text fields only, and validators against text
no column can store and against line breaks where one line is meant."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from wtforms import Field
from wtforms.validators import ValidationError

from service.platform.text import is_one_line, is_storable

SUBMIT_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class TextForm(FlaskForm):
    """A form bound to the request's text fields alone.

    Flask-WTF would also bind uploaded files (and a JSON body): a field sent as a file reached
    the validators as a FileStorage and `Length` failed with a 500. Here a file is no field at
    all, so it is missing, and the page says so like any missing field. The rate limits read
    `request.form` too, so both count the same fields.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formdata", request.form if request.method in SUBMIT_METHODS else None)
        super().__init__(**kwargs)


def storable(_form: FlaskForm, field: Field) -> None:
    """Refuse characters no keyboard types and no database column stores (NUL, lone surrogates)."""
    if isinstance(field.data, str) and not is_storable(field.data):
        raise ValidationError(_("This contains characters that cannot be used."))


def one_line(_form: FlaskForm, field: Field) -> None:
    """Refuse line breaks and other control characters in a field that holds one line (a ticket, a note)."""
    if isinstance(field.data, str) and not is_one_line(field.data):
        raise ValidationError(_("Keep this on one line, without line breaks or control characters."))
