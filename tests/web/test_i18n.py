"""Translations and display formats: every UI string has a Chinese translation, locale negotiation, money and time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

import siyu
from siyu.web import i18n, labels

PACKAGE = Path(siyu.__file__).resolve().parent
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def _extracted() -> set[str | tuple[str, str]]:
    with (PACKAGE / "locale" / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: set[str | tuple[str, str]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(PACKAGE), method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def _catalog(code: str):  # type: ignore[no-untyped-def]
    with (PACKAGE / "locale" / code / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=code)


def test_every_ui_string_is_in_both_catalogs_and_translated_into_chinese() -> None:
    extracted = _extracted()
    assert len(extracted) > 100  # the extraction really ran over templates and Python
    zh, en = _catalog("zh_CN"), _catalog("en")
    for catalog in (zh, en):
        ids = {m.id for m in catalog if m.id}
        missing = extracted - ids
        assert not missing, (
            f"{catalog.locale}: not in the catalog (run pybabel update): {sorted(map(str, missing))}"
        )
        stale = ids - extracted
        assert not stale, f"{catalog.locale}: obsolete entries: {sorted(map(str, stale))}"
    untranslated, broken = [], []
    for message in zh:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings) or message.fuzzy:
            untranslated.append(message.id)
            continue
        source = message.id if isinstance(message.id, str) else message.id[-1]
        for translated in strings:
            if set(PLACEHOLDER.findall(source)) != set(PLACEHOLDER.findall(translated)):
                broken.append((message.id, translated))
    assert not untranslated, f"zh_CN lacks translations for: {untranslated}"
    assert not broken, f"zh_CN placeholders differ: {broken}"


def test_every_label_is_extracted() -> None:
    # Labels are only marked with N_; make sure the extraction sees each one.
    extracted = _extracted()
    for table in ("stage", "account_kind", "account_status", "source", "event", "identity"):
        for code in getattr(
            labels,
            {
                "stage": "STAGES",
                "account_kind": "ACCOUNT_KINDS",
                "account_status": "ACCOUNT_STATUSES",
                "source": "SOURCES",
                "event": "EVENT_TYPES",
                "identity": "IDENTITY_KINDS",
            }[table],
        ):
            assert labels.label(table, code) in extracted


def test_catalogs_compile_in_memory() -> None:
    zh = i18n.translations_for("zh_CN")
    assert zh.gettext("Customers") == "客户"
    assert (
        zh.ngettext("%(count)s order, %(amount)s net", "%(count)s orders, %(amount)s net", 5)
        % {"count": 5, "amount": "¥1.00"}
        == "5 单，净额 ¥1.00"
    )
    en = i18n.translations_for("en")
    assert en.gettext("Customers") == "Customers"
    assert en.ngettext("%(count)s order, %(amount)s net", "%(count)s orders, %(amount)s net", 1).startswith(
        "%(count)s order,"
    )
    assert i18n.translations_for("fr").gettext("Customers") == "Customers"


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="zh_CN"):
        (tmp_path / "en" / "LC_MESSAGES").mkdir(parents=True)
        (tmp_path / "en" / "LC_MESSAGES" / "messages.po").write_text('msgid ""\nmsgstr ""\n')
        i18n.load_translations(tmp_path)


@pytest.mark.parametrize(
    ("cookie", "user", "header", "expected"),
    [
        (None, None, None, "en"),
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"),
        (None, None, "zh-TW", "zh_CN"),
        (None, None, "zh-Hans-CN", "zh_CN"),
        (None, None, "en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        (None, None, "fr-FR,fr;q=0.9,zh;q=0.5", "zh_CN"),  # best supported preference wins
        (None, None, "en;q=0.2,zh;q=0.8", "zh_CN"),  # quality beats order
        (None, None, "zh;q=0, en", "en"),  # q=0 means "not this one"
        (None, None, "de, *", "en"),
        (None, None, "garbage;;;,", "en"),
        (None, "zh_CN", "en-US", "zh_CN"),  # the user's setting beats the browser
        ("en", "zh_CN", "zh-CN", "en"),  # the cookie beats everything
        ("xx", None, "zh-CN", "zh_CN"),  # an unsupported cookie is ignored
    ],
)
def test_negotiate_locale(cookie: str | None, user: str | None, header: str | None, expected: str) -> None:
    assert i18n.negotiate_locale(cookie, user, header) == expected


def test_money_from_fen() -> None:
    assert i18n.format_money(0) == "¥0.00"
    assert i18n.format_money(5) == "¥0.05"
    assert i18n.format_money(123456789) == "¥1,234,567.89"
    assert i18n.format_money(-1999) == "-¥19.99"
    assert i18n.format_money(None) == "—"


def test_times_are_shown_in_shanghai() -> None:
    late_utc = datetime(2026, 3, 8, 16, 30, tzinfo=UTC)
    assert i18n.format_datetime(late_utc) == "2026-03-09 00:30"
    assert i18n.format_date(late_utc) == "2026-03-09"
    naive_from_sqlite = datetime(2026, 3, 8, 16, 30)
    assert i18n.format_datetime(naive_from_sqlite) == "2026-03-09 00:30"
    assert i18n.format_datetime(late_utc, "UTC") == "2026-03-08 16:30"


def test_every_event_type_of_the_vocabulary_has_a_label() -> None:
    from siyu.events.vocabulary import EventType

    assert set(EventType) <= set(labels.EVENT_TYPES)
