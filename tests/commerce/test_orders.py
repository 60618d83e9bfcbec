"""Orders: the API, Taobao (GBK) and generic CSV imports, idempotency, exact fen, bad rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from siyu.commerce.importers import import_orders_csv, yuan_to_fen
from siyu.commerce.models import Order, OrderItem
from siyu.customers.models import Customer, CustomerIdentity
from siyu.kit.bulk import RowInvalid

TAOBAO = Path(__file__).resolve().parents[1] / "data" / "taobao_orders_gbk.csv"


def _orders(db: Session) -> dict[str, Order]:
    db.expire_all()
    return {o.external_id: o for o in db.scalars(select(Order))}


def _count(db: Session, model: type) -> int:
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("19.90", 1990),
        ("0.01", 1),
        ("1299", 129900),
        ("¥1,299.00", 129900),
        ("0.29", 29),
        ("4.35", 435),
        ("19.9", 1990),
        ("1.10", 110),
    ],
)
def test_yuan_to_fen_is_exact(text: str, fen: int) -> None:
    assert yuan_to_fen(text, "amount") == fen


@pytest.mark.parametrize("text", ["19.999", "-1.00", "abc", "", "NaN", "1e3x"])
def test_yuan_to_fen_rejects(text: str) -> None:
    with pytest.raises(RowInvalid):
        yuan_to_fen(text, "amount")


def test_taobao_gbk_export_imports_once(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    assert TAOBAO.read_bytes().decode("gbk").startswith("订单编号")  # the fixture really is GBK
    progress: list[tuple[int, int | None]] = []
    report = import_orders_csv(
        engine, tenant.org_id, TAOBAO, "taobao", progress=lambda d, t: progress.append((d, t))
    )
    assert (report.rows_read, report.created, report.skipped) == (4, 3, 1), report
    assert report.errors[0].row == 5 and report.errors[0].field == "订单付款时间"
    assert report.customers_created == 2
    assert progress[-1] == (4, 4)
    orders = _orders(db)
    first, second, third = (orders[f"351234567890123456{i}"] for i in (1, 2, 3))  # ="..." protection removed
    assert (first.amount_fen, first.refunded_fen) == (1990, 0)
    assert (second.amount_fen, second.refunded_fen) == (12800, 2800)
    assert third.amount_fen == 129900
    # 2024-03-01 21:58:15 in Shanghai is 13:58:15 UTC.
    assert first.paid_at == datetime(2024, 3, 1, 13, 58, 15, tzinfo=UTC)
    assert third.paid_at == datetime(2024, 3, 10, 16, 0, 5, tzinfo=UTC)
    assert first.customer_id == second.customer_id != third.customer_id
    buyer = db.get(Customer, first.customer_id)
    assert buyer is not None and buyer.mobile == "13812345678" and buyer.source == "taobao_order"
    kinds = {
        (i.kind, i.value)
        for i in db.scalars(select(CustomerIdentity).where(CustomerIdentity.customer_id == first.customer_id))
    }
    assert kinds == {
        ("taobao_buyer_nick", "小美爱护肤"),
        ("mobile", "13812345678"),
    }  # the masked one is ignored
    item = db.scalar(select(OrderItem).where(OrderItem.order_id == second.id))
    assert item is not None and (item.name, item.quantity, item.unit_price_fen) == (
        "烟酰胺美白精华 30ml",
        2,
        6400,
    )

    again = import_orders_csv(engine, tenant.org_id, TAOBAO.read_bytes(), "taobao")
    assert (again.created, again.updated, again.unchanged, again.customers_created) == (0, 0, 3, 0)
    assert _count(db, Order) == 3 and _count(db, Customer) == 2 and _count(db, OrderItem) == 3


def _gbk(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("gbk")


def test_taobao_bad_rows_are_reported_and_skipped_whole(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    data = _gbk(
        [
            "订单编号 ,买家会员名 ,买家实际支付金额 ,订单付款时间 ,退款金额 ,收货人手机号 ",
            "9001,甲,19.90,2024-05-01 10:00:00,0.00,13800000001",
            "9002,乙,19.999,2024-05-01 10:00:00,0.00,",
            "9003,丙,10.00,yesterday,0.00,",
            "9004,,10.00,2024-05-01 10:00:00,0.00,",
            "9005,丁,10.00,2024-05-01 10:00:00,20.00,13800000005",
            "9006,戊,0.01,2024/5/1 10:00,,",
        ]
    )
    report = import_orders_csv(engine, tenant.org_id, data, "taobao")
    assert report.created == 2 and report.skipped == 4
    assert [(e.row, e.field) for e in report.errors] == [
        (3, "买家实际支付金额"),
        (4, "订单付款时间"),
        (5, "买家会员名"),
        (6, "退款金额"),
    ]
    assert set(_orders(db)) == {"9001", "9006"}
    # Bad rows stored nothing: no customer for 丁 or 乙 either.
    nicks = set(
        db.scalars(select(CustomerIdentity.value).where(CustomerIdentity.kind == "taobao_buyer_nick"))
    )
    assert nicks == {"甲", "戊"}
    assert _orders(db)["9006"].amount_fen == 1

    strict = import_orders_csv(engine, tenant.org_id, data.replace(b"9001", b"9101"), "taobao", strict=True)
    assert strict.created == 0 and strict.skipped == 4 and strict.strict
    assert "9101" not in _orders(db)


def test_refund_arriving_later_updates_the_order(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    head = "订单编号,买家会员名,买家实际支付金额,订单付款时间,退款金额"
    import_orders_csv(engine, tenant.org_id, _gbk([head, "77,买家,50.00,2024-05-01 10:00:00,0.00"]), "taobao")
    report = import_orders_csv(
        engine, tenant.org_id, _gbk([head, "77,买家,50.00,2024-05-01 10:00:00,50.00"]), "taobao"
    )
    assert (report.created, report.updated) == (0, 1)
    assert _orders(db)["77"].refunded_fen == 5000


def test_not_a_taobao_file_is_refused(engine: Engine, tenant) -> None:  # type: ignore[no-untyped-def]
    from siyu.kit.errors import Invalid

    with pytest.raises(Invalid, match="订单编号"):
        import_orders_csv(engine, tenant.org_id, b"order_id,amount\n1,2\n", "taobao")


def test_generic_csv_over_the_api(client, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    csv_text = (
        "platform,order_id,mobile,taobao_buyer_nick,amount_yuan,paid_at,refunded_yuan,items\n"
        "jd,JD-1,13800138000,,99.80,2024-06-01T12:00:00+08:00,,面霜*2*49.90\n"
        "douyin,DY-1,+86 13800138000,,0.10,2024-06-02 08:00:00,0.10,\n"
        "jd,JD-2,12345,,10.00,2024-06-01 12:00:00,,\n"
        "jd,JD-3,,,10.00,2024-06-01 12:00:00,,\n"
        "jd,JD-4,13900000000,,10.00,2024-06-01 12:00:00,,坏格式\n"
        "Bad Platform,X-1,13900000000,,10.00,2024-06-01 12:00:00,,\n"
    )
    files = {"file": ("orders.csv", csv_text.encode("utf-8-sig"), "text/csv")}
    response = client.post(
        "/api/v1/imports/orders", files=files, data={"format": "generic"}, headers=tenant.auth()
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rows_read"], body["created"], body["skipped"]) == (6, 2, 4)
    assert [(e["row"], e["field"]) for e in body["errors"]] == [
        (4, "mobile"),
        (5, "mobile"),
        (6, "items"),
        (7, "platform"),
    ]
    orders = _orders(db)
    assert orders["JD-1"].customer_id == orders["DY-1"].customer_id
    assert orders["JD-1"].paid_at == datetime(2024, 6, 1, 4, 0, tzinfo=UTC)
    assert orders["DY-1"].refunded_fen == 10
    items = client.get(f"/api/v1/orders/{orders['JD-1'].id}", headers=tenant.auth()).json()["items"]
    assert [(i["name"], i["quantity"], i["unit_price_fen"]) for i in items] == [("面霜", 2, 4990)]
    operator = client.post("/api/v1/imports/orders", files=files, headers=tenant.auth("operator"))
    assert operator.status_code == 403


def test_order_api_idempotent_and_scoped(client, make_tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    tenant, other = make_tenant("shop-a"), make_tenant("shop-b")
    body = {
        "platform": "youzan",
        "external_id": "YZ-1",
        "identity": {"kind": "mobile", "value": "13800138000"},
        "amount_fen": 1990,
        "paid_at": "2024-06-01T12:00:00Z",
        "items": [{"name": "面膜", "quantity": 1, "unit_price_fen": 1990}],
    }
    created = client.post("/api/v1/orders", json=body, headers=tenant.auth())
    assert created.status_code == 201, created.text
    repeat = client.post("/api/v1/orders", json=body, headers=tenant.auth())
    assert repeat.status_code == 200 and repeat.json()["id"] == created.json()["id"]
    assert _count(db, Order) == 1 and _count(db, OrderItem) == 1
    order_id = created.json()["id"]
    assert client.get(f"/api/v1/orders/{order_id}", headers=other.auth()).status_code == 404
    assert client.get("/api/v1/orders", headers=other.auth()).json()["items"] == []
    listed = client.get("/api/v1/orders", params={"platform": "youzan"}, headers=tenant.auth()).json()
    assert [o["external_id"] for o in listed["items"]] == ["YZ-1"]
    # The operator follows nobody, so sees no orders.
    assert client.get("/api/v1/orders", headers=tenant.auth("operator")).json()["items"] == []
    their_customer = Customer(org_id=other.org_id, name="别家")
    db.add(their_customer)
    db.commit()
    cross = {**body, "external_id": "YZ-2", "identity": None, "customer_id": their_customer.id}
    response = client.post("/api/v1/orders", json=cross, headers=tenant.auth())
    assert response.status_code == 422 and response.json()["field"] == "customer_id"
    bad = {**body, "external_id": "YZ-3", "refunded_fen": 5000}
    assert client.post("/api/v1/orders", json=bad, headers=tenant.auth()).status_code == 422
    naive = {**body, "external_id": "YZ-4", "paid_at": "2024-06-01T12:00:00"}
    assert client.post("/api/v1/orders", json=naive, headers=tenant.auth()).status_code == 422
