"""Console translations: Babel catalogs read from .po files, locale negotiation, and display formats.

The catalogs are compiled in memory at startup (``read_po`` then ``write_mo`` into a buffer), so no
``.mo`` file is needed in the repository or at install time. Templates are written in English; the
``zh_CN`` catalog carries the Chinese translations.
"""

from __future__ import annotations

import gettext
import re
from datetime import datetime
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from siyu.kit.clock import local

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
SUPPORTED_LOCALES = ("en", "zh_CN")
DEFAULT_LOCALE = "en"
LANG_COOKIE = "lang"
DOMAIN = "messages"
# What the language switcher shows: each language names itself.
LANGUAGE_NAMES = {"en": "English", "zh_CN": "简体中文"}

_ACCEPT_ITEM = re.compile(r"^\s*([A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def N_(message: str) -> str:
    """Mark a string for extraction without translating it now (it is translated where shown)."""
    return message


def _compile(po_path: Path, locale: str) -> gettext.NullTranslations:
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale, domain=DOMAIN)
    buffer = BytesIO()
    # Fuzzy entries are guesses awaiting review: showing English is better than showing a wrong guess.
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


@lru_cache(maxsize=4)
def load_translations(locale_dir: Path = LOCALE_DIR) -> dict[str, gettext.NullTranslations]:
    """Every supported locale's translations, read once from ``<locale_dir>/<code>/LC_MESSAGES/messages.po``."""
    loaded: dict[str, gettext.NullTranslations] = {}
    for code in SUPPORTED_LOCALES:
        path = locale_dir / code / "LC_MESSAGES" / f"{DOMAIN}.po"
        if not path.exists():
            raise FileNotFoundError(f"missing translation catalog for {code}: {path}")
        loaded[code] = _compile(path, code)
    return loaded


def translations_for(locale: str) -> gettext.NullTranslations:
    """The translations of a supported locale (English for anything else)."""
    catalogs = load_translations()
    return catalogs.get(locale) or catalogs[DEFAULT_LOCALE]


def normalize_locale(code: str | None) -> str | None:
    """Map a language tag onto a supported locale: any Chinese tag -> zh_CN, any English tag -> en, else None."""
    if not code:
        return None
    primary = code.strip().replace("-", "_").split("_")[0].lower()
    if primary == "zh":
        return "zh_CN"
    if primary == "en":
        return "en"
    return None


def parse_accept_language(header: str | None) -> list[str]:
    """The language tags of an Accept-Language header, best first (q=0 and malformed items dropped)."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        match = _ACCEPT_ITEM.match(item)
        if not match:
            continue
        try:
            quality = float(match.group(2)) if match.group(2) is not None else 1.0
        except ValueError:
            continue
        if quality <= 0:
            continue
        # Sort by quality, then by the order the browser listed them.
        ranked.append((-quality, position, match.group(1)))
    return [tag for _q, _p, tag in sorted(ranked)]


def negotiate_locale(cookie: str | None, user_locale: str | None, accept_language: str | None) -> str:
    """Pick the console locale: the ``lang`` cookie, else the user's setting, else the browser's preference."""
    for candidate in (cookie, user_locale):
        chosen = normalize_locale(candidate)
        if chosen:
            return chosen
    for tag in parse_accept_language(accept_language):
        chosen = normalize_locale(tag)
        if chosen:
            return chosen
    return DEFAULT_LOCALE


def format_money(fen: int | None) -> str:
    """Integer fen shown as yuan with two decimals and thousands separators: 123456 -> ¥1,234.56."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{yuan:,}.{cents:02d}"


def format_datetime(value: datetime | None, tz: str = "Asia/Shanghai") -> str:
    """A stored UTC time shown in the console's zone as YYYY-MM-DD HH:MM."""
    if value is None:
        return "—"
    return local(value, tz).strftime("%Y-%m-%d %H:%M")


def format_date(value: datetime | None, tz: str = "Asia/Shanghai") -> str:
    """A stored UTC time shown as the calendar date in the console's zone."""
    if value is None:
        return "—"
    return local(value, tz).strftime("%Y-%m-%d")


def format_number(value: int | float | None) -> str:
    """A count with thousands separators."""
    if value is None:
        return "—"
    return f"{value:,}"


def format_percent(value: float | None) -> str:
    """A share (0..1) shown as a percentage with one decimal."""
    if value is None:
        return "—"
    return f"{value * 100:.1f}%"
