"""Bulk customer import from CSV: rows parsed here, written by the customers bulk writer (``customers.bulk``).

CSV format (UTF-8 with or without BOM, or GBK/GB18030 as Excel saves it in China; header row = row 1).
Headers are matched case-insensitively after trimming spaces; Chinese headers in brackets also work:

- ``name`` (姓名), ``mobile`` (手机号), ``gender`` (性别: male/female/unknown, 男/女/未知, 1/2/0),
  ``region`` (地区), ``stage`` (阶段: new, contacted, retained, engaged, converted, repeat),
  ``source`` (来源), ``source_detail``, ``intent`` (意向), ``remark`` (备注: a manual remark; when absent
  the remark is composed as Name+Source+Intent+Mobile),
- ``tags`` (标签): ``group:tag`` pairs separated by ``;`` (full-width ``：`` and ``；`` also accepted),
  e.g. ``意向:高;痛点:祛痘``. Missing groups and tags are created. Import only adds tags, never removes.
- external ids, one per cell: ``wecom_external_userid``, ``unionid``, ``openid``, ``douyin_open_id``,
  ``taobao_buyer_nick``.

Every row needs at least one identifier (mobile or an external id): that is what makes re-importing
update instead of duplicate. A row's identifiers that belong to two existing customers merge them
(the oldest profile survives, as the customers service does). Blank cells leave stored values alone.
Bad rows are skipped whole and reported with their row number; ``strict=True`` stores nothing if any
row is bad. Rows are written in chunks, one transaction each, so a crash loses at most one chunk and
re-running the import is safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from siyu.customers.bulk import ProfileRecord, apply_profiles
from siyu.customers.models import Gender, IdentityKind, Stage
from siyu.customers.resolution import IdentityRef
from siyu.customers.tagging import TagsByName
from siyu.kit.bulk import (
    ImportReport,
    Progress,
    RowError,
    RowInvalid,
    as_sessionmaker,
    chunked,
    open_csv,
)
from siyu.kit.errors import Invalid
from siyu.kit.phone import normalize_mobile

# --------------------------------------------------------------------------- customer CSV rows

HEADER_ALIASES: dict[str, str] = {
    "姓名": "name",
    "名字": "name",
    "客户名称": "name",
    "手机": "mobile",
    "手机号": "mobile",
    "手机号码": "mobile",
    "性别": "gender",
    "地区": "region",
    "阶段": "stage",
    "来源": "source",
    "来源详情": "source_detail",
    "意向": "intent",
    "标签": "tags",
    "备注": "remark",
    "phone": "mobile",
}
TEXT_FIELDS: dict[str, int] = {"name": 120, "region": 60, "source": 60, "source_detail": 200, "intent": 60}
KNOWN_COLUMNS = {*TEXT_FIELDS, "mobile", "gender", "stage", "tags", "remark"} | {
    k.value for k in IdentityKind
}
GENDERS: dict[str, Gender] = {
    "male": Gender.male,
    "m": Gender.male,
    "男": Gender.male,
    "1": Gender.male,
    "female": Gender.female,
    "f": Gender.female,
    "女": Gender.female,
    "2": Gender.female,
    "unknown": Gender.unknown,
    "未知": Gender.unknown,
    "0": Gender.unknown,
}
STAGES: dict[str, Stage] = {s.value: s for s in Stage}


@dataclass(slots=True)
class CustomerRow:
    """One valid row: profile fields filled in (overwrite), defaults (fill blanks only), identities, tags."""

    row: int
    fields: dict[str, Any]
    identities: list[IdentityRef]
    tags: list[tuple[str, str]] = field(default_factory=list)
    remark: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class ColumnMap:
    """Which CSV column feeds which field, resolved once from the header."""

    index: dict[str, int]
    ignored: list[str]
    text_fields: list[tuple[str, int, int]] = field(default_factory=list)
    external_ids: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.text_fields = [(k, self.index[k], n) for k, n in TEXT_FIELDS.items() if k in self.index]
        self.external_ids = [
            (k.value, self.index[k.value])
            for k in IdentityKind
            if k is not IdentityKind.mobile and k.value in self.index
        ]

    @classmethod
    def from_header(cls, header: list[str]) -> ColumnMap:
        """Map trimmed header cells to known columns (Chinese aliases allowed); reject duplicates."""
        index: dict[str, int] = {}
        ignored: list[str] = []
        for i, cell in enumerate(header):
            key = HEADER_ALIASES.get(cell, cell.lower())
            if key not in KNOWN_COLUMNS:
                ignored.append(cell)
                continue
            if key in index:
                raise Invalid(f"column {cell!r} appears twice in the header", field="header")
            index[key] = i
        if not index.keys() & ({"mobile"} | {k.value for k in IdentityKind}):
            raise Invalid(
                "the header needs an identifier column: mobile or an external id "
                "(wecom_external_userid, unionid, openid, douyin_open_id, taobao_buyer_nick)",
                field="header",
            )
        return cls(index, ignored)


def parse_tags(raw: str) -> list[tuple[str, str]]:
    """``group:tag;group:tag`` (full-width separators too) into (group, tag) pairs."""
    pairs: list[tuple[str, str]] = []
    for item in raw.replace("；", ";").replace("：", ":").split(";"):
        item = item.strip()
        if not item:
            continue
        group, sep, name = item.partition(":")
        group, name = group.strip(), name.strip()
        if not sep or not group or not name:
            raise RowInvalid("tags", f"tag {item!r} must be written group:tag")
        if len(group) > 60 or len(name) > 60:
            raise RowInvalid("tags", f"tag {item!r}: group and tag names have at most 60 characters")
        pairs.append((group, name))
    return pairs


def parse_customer_row(number: int, cells: list[str], cols: ColumnMap) -> CustomerRow:
    """Validate one row into a CustomerRow or raise RowInvalid naming the column."""
    width = len(cells)
    index = cols.index

    def cell(key: str) -> str:
        i = index.get(key)
        return cells[i].strip() if i is not None and i < width else ""

    values: dict[str, Any] = {}
    for key, i, limit in cols.text_fields:
        text = cells[i].strip() if i < width else ""
        if text:
            if len(text) > limit:
                raise RowInvalid(key, f"at most {limit} characters, got {len(text)}")
            values[key] = text
    identities: list[IdentityRef] = []
    if raw := cell("mobile"):
        try:
            values["mobile"] = normalize_mobile(raw)
        except Invalid as exc:
            raise RowInvalid("mobile", exc.message) from None
        identities.append(("mobile", values["mobile"]))
    for kind, i in cols.external_ids:
        raw = cells[i].strip() if i < width else ""
        if raw:
            if len(raw) > 128:
                raise RowInvalid(kind, "an external id has at most 128 characters")
            identities.append((kind, raw))
    if not identities:
        raise RowInvalid("mobile", "the row has no identifier: fill mobile or an external id")
    if raw := cell("gender"):
        gender = GENDERS.get(raw.lower())
        if gender is None:
            raise RowInvalid("gender", f"unknown gender {raw!r} (male/female/unknown, 男/女, 1/2/0)")
        values["gender"] = gender
    if raw := cell("stage"):
        stage = STAGES.get(raw.lower())
        if stage is None:
            raise RowInvalid("stage", f"unknown stage {raw!r} (one of {', '.join(s.value for s in Stage)})")
        values["stage"] = stage
    remark = cell("remark") or None
    if remark and len(remark) > 200:
        raise RowInvalid("remark", "a remark has at most 200 characters")
    raw_tags = cell("tags")
    return CustomerRow(number, values, identities, parse_tags(raw_tags) if raw_tags else [], remark)


# --------------------------------------------------------------------------- customer CSV writing


def write_customer_rows(
    db: Session,
    org_id: int,
    rows: list[CustomerRow],
    report: ImportReport,
    tags: TagsByName | None = None,
    *,
    reason: str = "CSV import",
    origin: str = "import",
) -> list[int]:
    """Find, create, update and merge the customers of a chunk of rows through the customers bulk
    writer (``customers.bulk.apply_profiles``, which records the events); returns the customer id of
    each row, in order.

    Rows sharing an identifier describe one person; identifiers of two stored customers merge them
    (the oldest survives). ``fields`` overwrite stored values, ``defaults`` only fill empty ones.
    Counts go to ``report`` (created/updated/unchanged/merged customers)."""
    wanted_tags = {t for r in rows for t in r.tags}
    if wanted_tags:
        tags = tags or TagsByName(db, org_id)
        tags.ensure(db, wanted_tags)
    records = [
        ProfileRecord(
            identities=r.identities,
            fields=r.fields,
            defaults=r.defaults,
            remark=r.remark,
            tags=[tags.tags[t] for t in r.tags] if tags else [],
            row=r.row,
        )
        for r in rows
    ]
    outcome = apply_profiles(db, org_id, records, origin=origin, reason=reason)
    report.created += len(outcome.created)
    report.updated += outcome.updated
    report.unchanged += outcome.unchanged
    report.merged += len(outcome.merges)
    return outcome.customer_ids


def import_customers_csv(
    db: sessionmaker[Session] | Engine,
    org_id: int,
    source: str | Path | BinaryIO | bytes,
    *,
    progress: Progress | None = None,
    strict: bool = False,
    chunk_size: int = 5000,
) -> ImportReport:
    """Import customers from a CSV file or stream into an organization, one transaction per chunk.

    Re-importing updates profiles and never duplicates them; rows naming identifiers of two
    customers merge them. ``progress(rows_done, total_or_None)`` is called after each chunk.
    """
    factory = as_sessionmaker(db)
    csv_source = open_csv(source)
    cols = ColumnMap.from_header(csv_source.header)
    report = ImportReport(strict=strict, ignored_columns=cols.ignored)

    def parsed() -> Iterator[CustomerRow]:
        for number, cells in csv_source.rows:
            report.rows_read += 1
            try:
                yield parse_customer_row(number, cells, cols)
            except RowInvalid as exc:
                report.skipped += 1
                report.errors.append(RowError(row=number, field=exc.field, reason=exc.reason))

    if strict:
        # Validate everything first; with any bad row nothing is written.
        rows = list(parsed())
        if report.errors:
            return report
        batches: Iterable[list[CustomerRow]] = (list(part) for part in chunked(rows, chunk_size))
    else:
        batches = _batches(parsed(), chunk_size)
    with factory() as session:
        tags = TagsByName(session, org_id)
    for batch in batches:
        with factory() as session, session.begin():
            write_customer_rows(session, org_id, batch, report, tags)
        if progress:
            progress(report.rows_read, csv_source.total)
    if progress:
        progress(report.rows_read, report.rows_read)
    return report


def _batches(rows: Iterator[CustomerRow], size: int) -> Iterator[list[CustomerRow]]:
    batch: list[CustomerRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
