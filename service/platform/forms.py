"""What every HTML form shares: validators against text no column can store, and against line
breaks where one line is meant."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_wtf import FlaskForm
from wtforms import Field
from wtforms.validators import ValidationError

from service.platform.text import is_one_line, is_storable


def storable(_form: FlaskForm, field: Field) -> None:
    """Refuse characters no keyboard types and no database column stores (NUL, lone surrogates)."""
    if isinstance(field.data, str) and not is_storable(field.data):
        raise ValidationError(_("This contains characters that cannot be used."))


def one_line(_form: FlaskForm, field: Field) -> None:
    """Refuse line breaks and other control characters in a field that holds one line (a ticket, a note)."""
    if isinstance(field.data, str) and not is_one_line(field.data):
        raise ValidationError(_("Keep this on one line, without line breaks or control characters."))
