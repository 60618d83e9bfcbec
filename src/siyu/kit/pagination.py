"""Keyset pagination: stable under inserts and O(limit) however deep the page."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of results and the cursor for the next one (None on the last page)."""

    items: list[T]
    next_cursor: int | None = Field(default=None, description="Pass as ?cursor= to get the next page.")


def page_of(rows: list[T], limit: int, key: object) -> tuple[list[T], int | None]:
    """Split a query result fetched with ``limit + 1`` rows into the page and the next cursor."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, int(key(rows[-1]))  # type: ignore[operator]
