"""Order CSV imports: a documented generic format and Taobao's order export.

Both are idempotent (an order is unique per organization, platform and order number: importing a file
twice adds nothing; a changed refund amount is taken over), report each bad row by its spreadsheet
row number (header = row 1) and reason, and never store half a row: a bad row is skipped whole, and
with ``strict=True`` nothing at all is stored when any row is bad. Amounts in yuan are parsed as
decimals into integer fen exactly (never through float). Times without a UTC offset are Asia/Shanghai
local time. Files may be UTF-8 (with or without BOM) or GBK/GB18030; header cells are trimmed.

Generic format, one order per row (column names case-insensitive):

=================  ========================================================================
platform           required: taobao, jd, douyin, youzan, offline... (lowercase letters, digits, _)
order_id           required: the platform's order number (at most 64 characters)
buyer              at least one of: mobile, taobao_buyer_nick (or buyer_nick), unionid, openid,
                   wecom_external_userid, douyin_open_id
amount_yuan        what the buyer paid, e.g. 19.90 (or amount_fen: 1990)
paid_at            2024-06-01 20:15:00 (Asia/Shanghai) or ISO 8601 with offset
refunded_yuan      optional, default 0 (or refunded_fen)
items              optional: lines ``name*quantity*unit_price_yuan`` separated by ``;``,
                   e.g. ``面霜*2*99.00;小样*1*0``
=================  ========================================================================

Taobao (淘宝/天猫 订单报表 export, GBK): 订单编号, 买家会员名 (becomes a taobao_buyer_nick identity),
买家实际支付金额, 订单付款时间, 退款金额, and when present 收货人手机号/联系手机 (a mobile identity;
Taobao often masks it as 138****0000, such values are ignored), 宝贝标题 and 宝贝总数量 (one line;
its unit price is the paid amount divided by the quantity, rounded down, as the report has no
per-line prices). Rows without 订单付款时间 are unpaid orders and are reported, not stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import BinaryIO, Literal

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from siyu.commerce.schemas import PLATFORM_PATTERN
from siyu.commerce.service import ItemLine, OrderRow, write_orders
from siyu.customers.models import IdentityKind
from siyu.kit.bulk import ImportReport, Progress, RowError, RowInvalid, as_sessionmaker, open_csv
from siyu.kit.clock import SHANGHAI
from siyu.kit.errors import Invalid
from siyu.kit.phone import is_mobile, normalize_mobile

OrderFormat = Literal["generic", "taobao"]
_PLATFORM_RE = re.compile(PLATFORM_PATTERN)
_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
)


def yuan_to_fen(text: str, field: str) -> int:
    """ "19.90" -> 1990 exactly (Decimal, at most 2 decimals, ¥ and thousands separators allowed)."""
    cleaned = text.strip().lstrip("¥￥").replace(",", "").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise RowInvalid(field, f"{text!r} is not an amount in yuan") from None
    if not value.is_finite() or value < 0:
        raise RowInvalid(field, f"{text!r} must be a non-negative amount")
    if value.as_tuple().exponent < -2 and value != value.quantize(Decimal("0.01")):  # type: ignore[operator]
        raise RowInvalid(field, f"{text!r} has more than 2 decimals (fen is the smallest unit)")
    return int(value * 100)


def fen(text: str, field: str) -> int:
    """An integer amount in fen."""
    cleaned = text.strip()
    if not cleaned.isdigit():
        raise RowInvalid(field, f"{text!r} is not a whole number of fen")
    return int(cleaned)


def parse_time(text: str, field: str) -> datetime:
    """A paid time: ISO 8601 with offset, or a local Asia/Shanghai time as exports write it."""
    cleaned = text.strip()
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).replace(tzinfo=SHANGHAI)
        except ValueError:
            continue
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        raise RowInvalid(field, f"{text!r} is not a time like 2024-06-01 20:15:00") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=SHANGHAI)


def parse_items(text: str) -> list[ItemLine]:
    """``name*quantity*unit_price_yuan;...`` into order lines."""
    lines = []
    for part in text.replace("；", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        pieces = part.rsplit("*", 2)
        if len(pieces) != 3 or not pieces[0].strip():
            raise RowInvalid("items", f"{part!r} must be written name*quantity*unit_price_yuan")
        name, qty, price = pieces
        if not qty.strip().isdigit() or int(qty) < 1:
            raise RowInvalid("items", f"{part!r}: quantity must be a whole number of at least 1")
        if len(name.strip()) > 200:
            raise RowInvalid("items", "an item name has at most 200 characters")
        lines.append(ItemLine(name.strip(), int(qty), yuan_to_fen(price, "items")))
    return lines


def _clean_id(text: str) -> str:
    # Exports protect long numbers from Excel as ="123", '123 or with a tab.
    value = text.strip().strip("\t")
    if value.startswith('="') and value.endswith('"'):
        value = value[2:-1]
    return value.lstrip("'").strip()


_GENERIC_IDS = {k.value: k.value for k in IdentityKind} | {"buyer_nick": IdentityKind.taobao_buyer_nick.value}


def _generic_parser(header: list[str]) -> Callable[[int, list[str]], OrderRow]:
    index = {h.lower(): i for i, h in enumerate(header)}
    for required in ("platform", "order_id", "paid_at"):
        if required not in index:
            raise Invalid(f"the header needs a {required!r} column", field="header")
    if "amount_yuan" not in index and "amount_fen" not in index:
        raise Invalid("the header needs an 'amount_yuan' or 'amount_fen' column", field="header")
    id_columns = [(col, kind) for col, kind in _GENERIC_IDS.items() if col in index]
    if not id_columns:
        raise Invalid(
            "the header needs a buyer column: mobile, taobao_buyer_nick, unionid...", field="header"
        )

    def parse(number: int, cells: list[str]) -> OrderRow:
        def cell(name: str) -> str:
            i = index.get(name)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        platform = cell("platform").lower()
        if not _PLATFORM_RE.match(platform) or len(platform) > 30:
            raise RowInvalid(
                "platform", f"{platform!r} is not a platform code (lowercase letters, digits, _)"
            )
        order_id = _clean_id(cell("order_id"))
        if not order_id or len(order_id) > 64:
            raise RowInvalid("order_id", "an order id of 1 to 64 characters is required")
        refs = []
        for col, kind in id_columns:
            if value := cell(col):
                if kind == "mobile":
                    try:
                        value = normalize_mobile(value)
                    except Invalid as exc:
                        raise RowInvalid(col, exc.message) from None
                elif len(value) > 128:
                    raise RowInvalid(col, "an identifier has at most 128 characters")
                refs.append((kind, value))
        if not refs:
            raise RowInvalid("mobile", "the row names no buyer: fill mobile or another buyer identifier")
        if cell("amount_yuan"):
            amount = yuan_to_fen(cell("amount_yuan"), "amount_yuan")
        elif cell("amount_fen"):
            amount = fen(cell("amount_fen"), "amount_fen")
        else:
            raise RowInvalid("amount_yuan", "the amount is empty")
        refunded = 0
        if cell("refunded_yuan"):
            refunded = yuan_to_fen(cell("refunded_yuan"), "refunded_yuan")
        elif cell("refunded_fen"):
            refunded = fen(cell("refunded_fen"), "refunded_fen")
        if refunded > amount:
            raise RowInvalid("refunded_yuan", "the refund exceeds the amount paid")
        if not cell("paid_at"):
            raise RowInvalid("paid_at", "the paid time is empty")
        paid_at = parse_time(cell("paid_at"), "paid_at")
        items = parse_items(cell("items")) if cell("items") else []
        return OrderRow(number, platform, order_id, amount, paid_at, refunded, refs, items=items)

    return parse


TAOBAO_COLUMNS = {
    "order_id": ("订单编号",),
    "nick": ("买家会员名",),
    "amount": ("买家实际支付金额", "实付金额"),
    "paid_at": ("订单付款时间", "付款时间"),
    "refund": ("退款金额",),
    "mobile": ("收货人手机号", "联系手机", "手机"),
    "title": ("宝贝标题",),
    "quantity": ("宝贝总数量",),
}


def _taobao_parser(header: list[str]) -> Callable[[int, list[str]], OrderRow]:
    index: dict[str, int] = {}
    for key, names in TAOBAO_COLUMNS.items():
        for name in names:
            if name in header:
                index[key] = header.index(name)
                break
    missing = [TAOBAO_COLUMNS[k][0] for k in ("order_id", "nick", "amount", "paid_at") if k not in index]
    if missing:
        raise Invalid(f"not a Taobao order export: missing column(s) {', '.join(missing)}", field="header")

    def parse(number: int, cells: list[str]) -> OrderRow:
        def cell(key: str) -> str:
            i = index.get(key)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        order_id = _clean_id(cell("order_id"))
        if not order_id or len(order_id) > 64:
            raise RowInvalid("订单编号", "an order number of 1 to 64 characters is required")
        nick = cell("nick")
        if not nick or len(nick) > 128:
            raise RowInvalid("买家会员名", "the buyer nick is empty or longer than 128 characters")
        refs = [(IdentityKind.taobao_buyer_nick.value, nick)]
        mobile = _clean_id(cell("mobile"))
        if mobile and is_mobile(mobile):  # masked numbers (138****0000) are normal in exports: ignored
            refs.append((IdentityKind.mobile.value, normalize_mobile(mobile)))
        amount = yuan_to_fen(cell("amount") or "", "买家实际支付金额")
        refunded = yuan_to_fen(cell("refund"), "退款金额") if cell("refund") else 0
        if refunded > amount:
            raise RowInvalid("退款金额", "the refund exceeds the amount paid")
        if not cell("paid_at"):
            raise RowInvalid("订单付款时间", "unpaid order (订单付款时间 is empty): not imported")
        paid_at = parse_time(cell("paid_at"), "订单付款时间")
        items = []
        if title := cell("title")[:200]:
            qty_text = cell("quantity")
            qty = int(qty_text) if qty_text.isdigit() and int(qty_text) > 0 else 1
            items.append(ItemLine(title, qty, amount // qty))
        return OrderRow(number, "taobao", order_id, amount, paid_at, refunded, refs, name=nick, items=items)

    return parse


def import_orders_csv(
    db: sessionmaker[Session] | Engine,
    org_id: int,
    source: str | Path | BinaryIO | bytes,
    fmt: OrderFormat = "generic",
    *,
    progress: Progress | None = None,
    strict: bool = False,
    chunk_size: int = 5000,
) -> ImportReport:
    """Import orders from a generic or Taobao CSV, one transaction per chunk; see the module docstring."""
    factory = as_sessionmaker(db)
    csv_source = open_csv(source)
    if fmt == "taobao":
        parse = _taobao_parser(csv_source.header)
        customer_source = "taobao_order"
    elif fmt == "generic":
        parse = _generic_parser(csv_source.header)
        customer_source = None
    else:
        raise Invalid(f"unknown order format {fmt!r} (generic or taobao)", field="format")
    report = ImportReport(strict=strict)

    def parsed() -> Iterator[OrderRow]:
        for number, cells in csv_source.rows:
            report.rows_read += 1
            try:
                yield parse(number, cells)
            except RowInvalid as exc:
                report.skipped += 1
                report.errors.append(RowError(row=number, field=exc.field, reason=exc.reason))

    rows = parsed()
    if strict:
        everything = list(rows)
        if report.errors:
            return report
        rows = iter(everything)
    batch: list[OrderRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= chunk_size:
            _write(factory, org_id, batch, report, customer_source, progress, csv_source.total)
            batch = []
    if batch:
        _write(factory, org_id, batch, report, customer_source, progress, csv_source.total)
    if progress:
        progress(report.rows_read, report.rows_read)
    return report


def _write(
    factory: sessionmaker[Session],
    org_id: int,
    batch: list[OrderRow],
    report: ImportReport,
    source: str | None,
    progress: Progress | None,
    total: int | None,
) -> None:
    with factory() as session, session.begin():
        write_orders(session, org_id, batch, report, source=source, reason="order import")
    if progress:
        progress(report.rows_read, total)
