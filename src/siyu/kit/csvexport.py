"""CSV downloads: the one writer every export goes through, safe to open in Excel and WPS."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.responses import Response

# A spreadsheet reads a cell starting with one of these as a formula (=HYPERLINK(...) phones home,
# @SUM(...) and +/- start arithmetic; tab and CR are how those are smuggled past a naive check).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A cell safe for a spreadsheet: text that would start a formula gets a leading apostrophe (shown as
    text, as OWASP recommends); numbers stay numbers, so a negative profit is still a number."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """The CSV document, UTF-8 BOM first so that Excel on Chinese Windows reads it as UTF-8."""
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf)
    writer.writerow([neutralise(v) for v in header])
    for row in rows:
        writer.writerow([neutralise(v) for v in row])
    return buf.getvalue()


def csv_attachment(header: Sequence[Any], rows: Iterable[Sequence[Any]], filename: str) -> Response:
    """A CSV download of ``rows`` under ``header``; never cached (it holds customer data)."""
    return Response(
        csv_text(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
