"""Mail rendered once per form: a reset mail put together from its form and its values reads
exactly as the templates would have rendered it, whatever the values hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import service.outbox.mail as mail
from service import create_app
from service.outbox.mail import render_email
from tests.conftest import test_settings as settings_for

NOW = datetime(2026, 11, 30, 14, 5, 7, tzinfo=UTC)
# Text a mail may carry, with what HTML escaping must change and the marker's own character.
VALUES = st.text(alphabet=st.sampled_from("ab é<>&\"'/:=?#\x1fµ中"), max_size=12)

FORMS: dict[str, dict[str, Any]] = {
    "reset_link": {
        "subject": "Reset your password",
        "context": {"code_page": "https://account.example.com/reset-password/code", "lifetime_minutes": 60},
        "slots": ("username", "link", "code", "report_link"),
    },
    "temporary_password": {
        "subject": "Your temporary password",
        "context": {"lifetime_hours": 24},
        "slots": ("username", "temporary_password", "report_link", "until"),
    },
}


@pytest.fixture(scope="module")
def forms_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    database = tmp_path_factory.mktemp("forms") / "forms.db"
    yield create_app(settings_for(f"sqlite:///{database}", SHOP_NAME="Canadian <Insulin> & Co"))


def rendered_both_ways(template: str, language: str, values: dict[str, str]) -> tuple[Any, Any]:
    form = FORMS[template]
    from_form = render_email(template, form["subject"], now=NOW, language=language, slots=values, **form["context"])
    in_full = render_email(template, form["subject"], now=NOW, language=language, **form["context"], **values)
    return from_form, in_full


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("template", sorted(FORMS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mail_from_its_form_is_the_mail_the_templates_render(
    forms_app: Flask, template: str, language: str, data: st.DataObject
) -> None:
    values = {name: data.draw(VALUES, label=name) for name in FORMS[template]["slots"]}
    with forms_app.app_context():
        from_form, in_full = rendered_both_ways(template, language, values)
    assert from_form == in_full


@pytest.mark.parametrize("template", sorted(FORMS))
def test_the_templates_run_once_per_form(forms_app: Flask, template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[str] = []
    real = mail.render_template

    def counting(name: str, **context: Any) -> str:
        runs.append(name)
        return real(name, **context)

    monkeypatch.setattr(mail, "render_template", counting)
    form = FORMS[template]
    forms_app.extensions.pop("resetdesk.mail_forms", None)  # none kept from the tests before
    with forms_app.app_context():
        mails = [
            render_email(
                template, form["subject"], now=NOW + timedelta(seconds=second), language="fr", **form["context"],
                slots={name: f"{name}-{second}" for name in form["slots"]},
            )
            for second in range(3)
        ]
        assert len(runs) == 2  # the text and the HTML of the first mail only
        # A new minute may bring other contact details (summer time): the form is rendered again.
        render_email(
            template, form["subject"], now=NOW + timedelta(minutes=1), language="fr", **form["context"],
            slots=dict.fromkeys(form["slots"], "x"),
        )
        assert len(runs) == 4
    assert [m.text_body.count(f"username-{n}") for n, m in enumerate(mails)] == [1, 1, 1]


def test_a_changed_setting_gives_a_new_form(forms_app: Flask) -> None:
    form = FORMS["reset_link"]
    slots = dict.fromkeys(form["slots"], "x")
    with forms_app.app_context():
        before = render_email("reset_link", form["subject"], now=NOW, slots=slots, **form["context"])
        forms_app.config["SHOP_NAME"] = "Another Shop"
        try:
            after = render_email("reset_link", form["subject"], now=NOW, slots=slots, **form["context"])
        finally:
            forms_app.config["SHOP_NAME"] = "Canadian <Insulin> & Co"
    assert "Another Shop" in after.text_body and "Another Shop" not in before.text_body
