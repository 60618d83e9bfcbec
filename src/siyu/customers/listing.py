"""Lists of customers a principal may see: keyset pages and exact counts over the filters of
``CustomerFilters`` (the queries are ``customers.repository``'s)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.customers import repository as repo
from siyu.customers.models import Customer
from siyu.customers.schemas import CustomerFilters
from siyu.customers.tagging import check_tag_ids
from siyu.kit.errors import Invalid
from siyu.tenancy.principal import Principal

MAX_PAGE = 200


def list_customers(
    db: Session,
    principal: Principal,
    filters: CustomerFilters | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[Customer], int | None]:
    """One keyset page of visible customers, highest id first: (rows, next_cursor). Filters: name
    substring, full mobile or last 4 digits, all of tag_ids, stage, source, followed by account_id."""
    filters = filters or CustomerFilters()
    limit = max(1, min(limit, MAX_PAGE))
    check_tag_ids(db, principal.org_id, filters.tag_ids)
    if (
        filters.account_id is not None
        and db.scalar(
            select(Account.id).where(Account.id == filters.account_id, Account.org_id == principal.org_id)
        )
        is None
    ):
        raise Invalid(f"account {filters.account_id} does not exist", field="account_id")
    rows = list(db.scalars(repo.list_query(db, principal, filters, cursor, limit)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, rows[-1].id


def count_customers(
    db: Session, principal: Principal, filters: CustomerFilters | None = None, *, at_most: int | None = None
) -> int:
    """The number of visible customers matching ``filters``: exact without ``at_most`` (a full count: call
    it on demand only), else the smaller of it and ``at_most`` (reads at most that many rows)."""
    filters = filters or CustomerFilters()
    check_tag_ids(db, principal.org_id, filters.tag_ids)
    stmt = repo.count_query(principal, filters, db.get_bind().dialect.name, limit=at_most)
    return int(db.scalar(stmt) or 0)
