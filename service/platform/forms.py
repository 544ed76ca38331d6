"""What every HTML form shares: a validator against text no column can store."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_wtf import FlaskForm
from wtforms import Field
from wtforms.validators import ValidationError

from service.platform.text import is_storable


def storable(_form: FlaskForm, field: Field) -> None:
    """Refuse characters no keyboard types and no database column stores (NUL, lone surrogates)."""
    if isinstance(field.data, str) and not is_storable(field.data):
        raise ValidationError(_("This contains characters that cannot be used."))
