"""Mail people trust, in its HTML: every mail in one layout with the shop's name (and logo),
a real button for its link, its code set apart, the customer-service footer, inline styles only.

The same mails are opened in Chromium and checked by axe-core in test_mail_browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service import create_app
from service.platform.extensions import db
from tests.conftest import test_settings as settings_for
from tests.outbox.mail_samples import MAILS, SampleMail, sample_mail

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "mail"
LAYOUT = "mail/_layout.html"
SHOP = "Canadian Insulin"
PUBLIC_BASE_URL = "https://account.example.com"
LANGUAGES = ("en", "fr")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# --- a small HTML tree, enough to ask where things are --------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str) -> list[Element]:
        return [element for element in self.iter() if element.tag == tag]

    def text(self) -> str:
        parts = [child if isinstance(child, str) else child.text() for child in self.children]
        return " ".join(" ".join(parts).split())

    def style(self) -> dict[str, str]:
        declarations = (part.split(":", 1) for part in self.attrs.get("style", "").split(";") if ":" in part)
        return {name.strip().lower(): value.strip().lower() for name, value in declarations}

    def ancestors(self) -> Iterator[Element]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs}, self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, {name: value or "" for name, value in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(html: str) -> Element:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# --- colours, as WCAG 2 measures them ---------------------------------------------------------


def luminance(colour: str) -> float:
    value = colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    channels = [int(value[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def pixels(size: str) -> float:
    match = re.fullmatch(r"([\d.]+)px", size)
    assert match, f"not a size in px: {size!r}"
    return float(match.group(1))


# --- the app the mails are written by -----------------------------------------------------------


@pytest.fixture
def mail_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Makes an app on a SQLite file with the given settings; mail needs no table."""
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(
            settings_for(f"sqlite:///{tmp_path / f'mail{len(made)}.db'}", PUBLIC_BASE_URL=PUBLIC_BASE_URL, **overrides)
        )
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()


def rendered(app: Flask, name: str, language: str = "en") -> tuple[SampleMail, Element]:
    with app.app_context():
        sample = sample_mail(name, language)
    assert sample.email.html_body
    return sample, parse(sample.email.html_body)


# --- one layout for every mail ------------------------------------------------------------------


def test_the_samples_cover_every_mail_there_is() -> None:
    templates = {path.stem for path in TEMPLATES.glob("*.html") if not path.name.startswith("_")}
    assert templates == set(MAILS)


@pytest.mark.parametrize("name", MAILS)
def test_every_html_mail_extends_the_one_layout(name: str) -> None:
    first_line = (TEMPLATES / f"{name}.html").read_text().splitlines()[0]
    assert first_line == f'{{% extends "{LAYOUT}" %}}'


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", MAILS)
def test_every_html_mail_has_the_shops_name_a_heading_and_the_customer_service_footer(
    mail_app: Callable[..., Flask], name: str, language: str
) -> None:
    sample, document = rendered(mail_app(), name, language)
    [html] = document.find_all("html")
    assert html.attrs["lang"] == language
    assert any(meta.attrs.get("name") == "viewport" for meta in document.find_all("meta"))
    [title] = document.find_all("title")
    assert title.text() == sample.email.subject
    [body] = document.find_all("body")
    # The shop's name comes first, before anything the mail says.
    assert body.text().startswith(SHOP)
    [heading] = document.find_all("h1")
    assert heading.text() == sample.email.subject
    # The customer-service footer closes the mail: phone (a tel: link), hours, email.
    links = document.find_all("a")
    tel = [a for a in links if a.attrs["href"].startswith("tel:")]
    mailto = [a for a in links if a.attrs["href"].startswith("mailto:")]
    assert [a.text() for a in tel] == ["1-844-560-7790"] and tel[0].attrs["href"] == "tel:+18445607790"
    assert [a.text() for a in mailto] == ["service@canadianinsulin.com"]
    footer = next(ancestor for ancestor in tel[0].ancestors() if ancestor.tag == "td")
    assert mailto[0] in list(footer.iter())
    hours = "Monday to Friday, 9:00 AM to 6:00 PM" if language == "en" else "du lundi au vendredi"
    assert hours in footer.text()
    assert body.text().endswith(footer.text())


@pytest.mark.parametrize("name", MAILS)
def test_every_html_mail_is_styled_inline_with_presentation_tables_only(mail_app: Callable[..., Flask], name: str) -> None:
    _sample, document = rendered(mail_app(), name)
    elements = list(document.iter())
    # Mail clients drop <style> blocks and stylesheets; Gmail drops class names with them.
    assert not [e.tag for e in elements if e.tag in ("style", "link", "script")]
    assert not [e.tag for e in elements if "class" in e.attrs or "id" in e.attrs]
    tables = document.find_all("table")
    assert tables, "the layout is made of tables, which every mail client lays out alike"
    # Layout tables are no data tables: a screen reader should not announce rows and columns.
    assert all(table.attrs.get("role") == "presentation" for table in tables)
    # The card is fluid up to 600 px, so it fits a 375 px phone without scrolling sideways.
    card = next(table for table in tables if "max-width" in table.style())
    assert pixels(card.style()["max-width"]) <= 600 and card.attrs.get("width") == "100%"


# --- the logo -----------------------------------------------------------------------------------


def test_without_a_logo_the_shops_name_is_text(mail_app: Callable[..., Flask]) -> None:
    _sample, document = rendered(mail_app(), "reset_link")
    assert document.find_all("img") == []


@pytest.mark.parametrize(
    ("logo", "src"),
    [
        ("https://cdn.example.com/logo.png", "https://cdn.example.com/logo.png"),
        # A path on this site: a mail is read elsewhere, so it becomes an address on the public host.
        ("/static/logo.png", f"{PUBLIC_BASE_URL}/static/logo.png"),
    ],
)
@pytest.mark.parametrize("name", MAILS)
def test_with_a_logo_every_mail_shows_it_named_by_its_alt_text(
    mail_app: Callable[..., Flask], name: str, logo: str, src: str
) -> None:
    _sample, document = rendered(mail_app(LOGO_URL=logo), name)
    [image] = document.find_all("img")
    assert image.attrs["src"] == src
    # Most clients block images at first: the alt text is what people see, so it is the name.
    assert image.attrs["alt"] == SHOP
    [body] = document.find_all("body")
    assert next(element for element in body.iter() if element.tag == "img" or element.tag == "h1") is image


# --- the button and the code --------------------------------------------------------------------

WITH_BUTTON = ("reset_link", "email_confirm", "sign_in_throttled", "username_reminder")
WITH_SECRET = ("reset_link", "temporary_password")


@pytest.mark.parametrize("colour", ["#0b5394", "#f6c343", "#e0e0e0", "#111"])
@pytest.mark.parametrize("name", WITH_BUTTON)
def test_a_mails_link_is_a_real_button_readable_in_the_shops_colour(
    mail_app: Callable[..., Flask], name: str, colour: str
) -> None:
    sample, document = rendered(mail_app(PRIMARY_COLOUR=colour), name)
    assert sample.button_href
    [button] = [a for a in document.find_all("a") if a.attrs["href"] == sample.button_href]
    cell = button.parent
    assert cell is not None and cell.tag == "td"
    assert next(ancestor for ancestor in cell.ancestors() if ancestor.tag == "table").attrs["role"] == "presentation"
    # The cell is painted (Outlook ignores an <a>'s padding) and so is the link (for the rest).
    assert cell.attrs.get("bgcolor", "").lower() == colour.lower()
    assert cell.style()["background-color"] == colour.lower()
    style = button.style()
    assert style["display"] == "inline-block"
    assert style["text-decoration"] == "none"
    assert pixels(style["font-size"]) >= 16 and style["font-weight"] == "bold"
    assert pixels(style["padding"].split()[0]) >= 12
    assert style["background-color"] == colour.lower()
    assert contrast(style["color"], colour) >= 4.5, (style["color"], colour)
    assert button.text()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", WITH_SECRET)
def test_a_code_or_temporary_password_is_set_apart_large_and_monospaced(
    mail_app: Callable[..., Flask], name: str, language: str
) -> None:
    sample, document = rendered(mail_app(), name, language)
    assert sample.secret
    [box] = [element for element in document.iter() if element.text() == sample.secret and element.tag != "a"
             and not any(isinstance(child, Element) and child.text() == sample.secret for child in element.children)]
    assert box.tag == "td", "the code has a box of its own"
    style = box.style()
    assert "monospace" in style["font-family"]
    assert pixels(style["font-size"]) >= 24
    assert pixels(style["letter-spacing"]) >= 2
    assert "border" in style and "padding" in style
    assert contrast(style["color"], style["background-color"]) >= 7

