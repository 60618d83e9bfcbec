"""Search by name or remark (trigram index) and by a mobile's last 4 digits (a derived, indexed column)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from siyu.customers import listing, profiles, search
from siyu.customers.models import Customer
from siyu.customers.schemas import CustomerFilters
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal


def _ids(client: TestClient, tenant, **params: str) -> list[int]:  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/customers", params=params, headers=tenant.auth())
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["items"]]


def _customers(db: Session, org: int) -> dict[str, int]:
    people = {
        "cat": ("王小明", "13800001234", "喜欢猫粮，下次推荐新品"),
        "dog": ("李华", "13900005678", "狗狗用品老客户"),
        "both": ("张猫粮", "13700001234", ""),
    }
    out = {}
    for key, (name, mobile, remark) in people.items():
        out[key] = profiles.create_customer(db, org, {"name": name, "mobile": mobile, "remark": remark}).id
    db.commit()
    return out


def test_text_search_finds_remarks_and_names(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    ids = _customers(db, tenant.org_id)
    # Three characters or more go through the index, shorter text through a scan: both find the same.
    assert sorted(_ids(client, tenant, q="猫粮")) == sorted([ids["cat"], ids["both"]])
    assert sorted(_ids(client, tenant, q="喜欢猫粮")) == [ids["cat"]]
    assert _ids(client, tenant, q="狗狗用品") == [ids["dog"]]
    assert _ids(client, tenant, q="王小明") == [ids["cat"]]
    # name= stays a name search: the remark of "cat" does not match it.
    assert _ids(client, tenant, name="张猫粮") == [ids["both"]]
    assert _ids(client, tenant, name="喜欢猫粮") == []
    # FTS operators in the text are matched literally, not parsed.
    assert _ids(client, tenant, q='猫" OR "狗') == []
    count = client.get("/api/v1/customers/count", params={"q": "下次推荐"}, headers=tenant.auth())
    assert count.json()["count"] == 1


def test_console_search_box_finds_a_remark(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    ids = _customers(db, tenant.org_id)
    form = client.get("/login")
    assert form.status_code == 200
    client.post(
        "/login",
        data={
            "email": f"admin@{tenant.slug}.test",
            "password": "password123",
            "csrf_token": client.cookies.get("siyu_login_csrf", ""),
            "next": "/",
        },
    )
    page = client.get("/customers", params={"q": "狗狗用品"})
    assert page.status_code == 200
    assert f'/customers/{ids["dog"]}"' in page.text and f'/customers/{ids["cat"]}"' not in page.text


def test_the_index_follows_edits_and_deletes(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    ids = _customers(db, tenant.org_id)
    admin = Principal(tenant.org_id, tenant.admin_id, Role.admin)

    def found(value: str) -> list[int]:
        rows, _ = listing.list_customers(db, admin, CustomerFilters(text=value), None, 50)
        return [c.id for c in rows]

    customer = db.get(Customer, ids["dog"])
    assert customer is not None
    customer.remark = "只买鸟食"
    customer.name = "李大华"
    db.commit()
    assert found("狗狗用品") == [] and found("只买鸟食") == [ids["dog"]] and found("李大华") == [ids["dog"]]
    db.delete(customer)
    db.commit()
    assert found("只买鸟食") == []


def test_last_four_digits_are_derived_and_indexed(
    client: TestClient, tenant, db: Session, engine: Engine
) -> None:  # type: ignore[no-untyped-def]
    ids = _customers(db, tenant.org_id)
    assert sorted(_ids(client, tenant, mobile="1234")) == sorted([ids["cat"], ids["both"]])
    customer = db.get(Customer, ids["cat"])
    assert customer is not None
    customer.mobile = "13800009999"
    db.commit()
    db.refresh(customer)
    assert customer.mobile_last4 == "9999"
    assert _ids(client, tenant, mobile="1234") == [ids["both"]]
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            plan = " ".join(
                str(r[-1])
                for r in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT id FROM customers WHERE org_id = 1 AND mobile_last4 = '1234'"
                    )
                )
            )
        assert "ix_customers_org_mobile_last4" in plan


def test_a_loaded_brand_is_searchable_and_a_reload_leaves_no_stale_entries(
    engine: Engine, db: Session
) -> None:
    from siyu.demo import generate_world
    from siyu.demo.loader import load_world

    world = generate_world(customers=200, seed=5)
    first = load_world(engine, world)
    remark = db.scalar(
        text("SELECT remark FROM customers WHERE org_id = :o AND length(remark) >= 4 ORDER BY id LIMIT 1"),
        {"o": first.org_id},
    )
    assert remark
    needle = remark[:4]

    def found(org_id: int) -> set[int]:
        admin_id = db.scalar(text("SELECT id FROM users WHERE org_id = :o AND role = 'admin'"), {"o": org_id})
        admin = Principal(org_id, int(admin_id), Role.admin)
        rows, _ = listing.list_customers(db, admin, CustomerFilters(text=needle), None, 200)
        return {c.id for c in rows}

    def expected(org_id: int) -> set[int]:
        rows = db.execute(
            text("SELECT id FROM customers WHERE org_id = :o AND (name LIKE :p OR remark LIKE :p)"),
            {"o": org_id, "p": f"%{needle}%"},
        )
        return {int(r[0]) for r in rows}

    assert found(first.org_id) == expected(first.org_id) != set()
    second = load_world(engine, world, replace=True)
    db.expire_all()
    assert found(second.org_id) == expected(second.org_id) != set()
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            stale = conn.scalar(
                text(
                    "SELECT count(*) FROM customers_search WHERE customers_search MATCH :q "
                    "AND rowid NOT IN (SELECT id FROM customers)"
                ),
                {"q": f'"{needle}"'},
            )
        assert stale == 0


def test_two_characters_find_what_a_scan_finds(db: Session, tenant, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    people = {
        "start": ("张鑫东", ""),
        "end": ("王张鑫", ""),
        "whole": ("张鑫", ""),
        "remark": ("李华", "老客户张鑫介绍"),
        "one_char": ("张", "鑫"),
        "apart": ("张三鑫", "张 鑫"),
        "percent": ("5%折扣", "a_b"),
    }
    ids = {
        key: profiles.create_customer(db, org, {"name": name, "remark": remark}).id
        for key, (name, remark) in people.items()
    }
    db.commit()
    admin = Principal(org, tenant.admin_id, Role.admin)

    def found(**filters: str) -> set[int]:
        rows, _ = listing.list_customers(db, admin, CustomerFilters(**filters), None, 50)  # type: ignore[arg-type]
        return {c.id for c in rows}

    both = {ids["start"], ids["end"], ids["whole"]}
    assert found(name="张鑫") == both
    assert found(text="张鑫") == both | {ids["remark"]}
    assert found(text="%折") == {ids["percent"]} and found(text="a_") == {ids["percent"]}
    assert found(text="_b") == {ids["percent"]} and found(text="ab") == set()
    if engine.dialect.name == "postgresql":
        # The bigram index can serve the pair (with scans forbidden, nothing else can).
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_indexscan = off")
            stmt = select(Customer.id).where(search.contains_text("postgresql", "张鑫", remark=False))
            sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r[0]) for r in conn.execute(text("EXPLAIN " + sql)))
        assert "ix_customers_name_bigrams" in plan
