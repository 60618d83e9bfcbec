"""``one_of``: the same rows as ``IN`` on each backend, for any list length, in built-once statements too."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.customers.models import Customer, CustomerIdentity, IdentityKind
from siyu.kit.bulk import one_of, one_of_param


def test_one_of_selects_exactly_the_listed_rows(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for n in range(5):
        customer = Customer(org_id=tenant.org_id, name=f"c{n}")
        db.add(customer)
        db.flush()
        db.add(
            CustomerIdentity(
                org_id=tenant.org_id,
                customer_id=customer.id,
                kind=IdentityKind.mobile,
                value=f"1380000{n:04d}",
            )
        )
        ids.append(customer.id)
    db.flush()
    for wanted in ([], ids[:1], ids[1:4], [*ids, 10**9]):
        got = db.scalars(select(Customer.id).where(one_of(db, Customer.id, wanted))).all()
        assert sorted(got) == sorted(i for i in ids if i in wanted)
    values = ["13800000001", "13800000003", "nobody"]
    got_values = db.scalars(
        select(CustomerIdentity.value).where(one_of(db, CustomerIdentity.value, values))
    ).all()
    assert sorted(got_values) == ["13800000001", "13800000003"]
    # A statement built once, for the session's dialect, the list given at execution.
    built = select(func.count()).where(one_of_param(db.get_bind().dialect.name, Customer.id, "ids"))
    assert db.scalar(built, {"ids": ids[2:]}) == 3
    assert db.scalar(built, {"ids": []}) == 0
