"""The console's Jinja2 environment and the per-request rendering context (translations, CSRF, user)."""

from __future__ import annotations

import gettext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from siyu.tenancy.principal import Principal
from siyu.web import i18n, labels

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(("html", "xml")),
    extensions=["jinja2.ext.i18n"],
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Old-style gettext: the translation callables come from each render's context (one language per request,
# never a process-wide global), and {% trans %} marks its result safe and escapes the variables it formats.
env.newstyle_gettext = False  # type: ignore[attr-defined]
env.filters["money"] = i18n.format_money
env.filters["datetime"] = i18n.format_datetime
env.filters["date"] = i18n.format_date
env.filters["number"] = i18n.format_number
env.filters["percent"] = i18n.format_percent
env.filters["shown_properties"] = labels.shown_properties


@dataclass
class PageContext:
    """What every console page needs besides its own data."""

    request: Request
    locale: str
    translations: gettext.NullTranslations
    principal: Principal | None = None
    csrf_token: str = ""
    timezone: str = "Asia/Shanghai"
    extra: dict[str, Any] = field(default_factory=dict)

    def gettext(self, message: str) -> str:
        """Translate one message into the request's language."""
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """Translate a message with a count."""
        return self.translations.ngettext(singular, plural, n)

    def label(self, table: str, code: object) -> str:
        """A stored code (stage, kind, source...) in the request's language, or verbatim when unknown."""
        text = labels.label(table, code)
        return self.gettext(text) if labels.is_known(table, code) else text

    def sentence(self, text: str | None) -> str:
        """A sentence siyu stored in English (a rule's reason, a source detail) in the request's language."""
        return labels.stored_sentence(text, self.gettext, self.label) if text else ""

    def variables(self) -> dict[str, Any]:
        """The template globals for this request."""
        path = self.request.url.path
        if self.request.url.query:
            path += "?" + self.request.url.query
        return {
            "request": self.request,
            "gettext": self.gettext,
            "ngettext": self.ngettext,
            "_": self.gettext,
            "lbl": self.label,
            "sentence": self.sentence,
            "locale": self.locale,
            "html_lang": self.locale.replace("_", "-"),
            "languages": i18n.LANGUAGE_NAMES,
            "principal": self.principal,
            "csrf_token": self.csrf_token,
            "current_path": path,
            "current_path_q": quote(path, safe=""),
            "tz": self.timezone,
        }


def render(ctx: PageContext, template: str, status_code: int = 200, **data: Any) -> HTMLResponse:
    """Render a template with the page context and return it as HTML."""
    html = env.get_template(template).render({**ctx.variables(), **ctx.extra, **data})
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Content-Language"] = ctx.locale.replace("_", "-")
    # Pages vary by cookie and language; never let a shared cache serve one user's page to another.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Cookie, Accept-Language"
    return response
